"""AutoPGD (Croce & Hein, ICML 2020, arXiv 2003.01690), linf and l2, with the CE and DLR losses.

Objective: maximise a loss ``L(f(x + delta), y)`` over the ``eps``-ball and [0, 1] with a
budget of ``steps`` iterations and no step-size tuning:

* ``z = P(x_k + eta_k * dir(grad_k))``; ``x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1}))``
  with momentum ``a = 0.75`` (``a = 1`` at the first step); ``eta_0 = 2 eps``;
* at checkpoints ``w_j`` (first at ``0.22 steps``, then shrinking by ``0.03 steps`` down to
  ``0.06 steps``) the step size is halved and the iterate reset to the best point when
  (1) the loss increased in at most ``rho = 0.75`` of the steps since the last checkpoint, or
  (2) the step size was not reduced at the last checkpoint and the best loss did not improve.

Losses: ``ce`` (cross-entropy) and ``dlr`` (difference of logits ratio,
``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``; targeted ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``),
plus ``cw`` (``max_{i != y} z_i - z_y``, the loss ACG uses).

Reference: fra31/auto-attack ``autopgd_base.py``, re-implemented (not copied). The shared loop
:func:`auto_loop` also runs ACG (:mod:`bbdefense.attacks.acg`), which replaces the momentum
direction by a conjugate-gradient one. Difference: the loss history starts with the loss at
the starting point (the reference's oscillation check reads one row before its history at the
first checkpoint).

Queries: one forward per iteration plus one at the start, i.e. at most
``restarts * (steps + 1)`` per image; an image stops at its first adversarial iterate
(``early_stop``) and restarts run only on images not yet fooled.
"""

from __future__ import annotations

import math
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from ..models import BlackBox, WhiteBox
from ..training.pgd import project
from ..utils import make_generator
from .base import Attack, Outcome, is_adversarial, margin_loss, register_attack
from .pgd import check_white, keep_best, white_outcome

LOSSES = ("ce", "dlr", "cw")


def attack_loss(logits: Tensor, y: Tensor, target: Tensor | None, loss: str) -> Tensor:
    """Per-example loss to *maximise*. Shape ``(N, K)`` -> ``(N,)``."""
    if loss == "ce":
        return -F.cross_entropy(logits, target, reduction="none") if target is not None else \
            F.cross_entropy(logits, y, reduction="none")
    if loss == "cw":
        return margin_loss(logits, target) if target is not None else -margin_loss(logits, y)
    srt = logits.sort(dim=1).values
    zy = logits.gather(1, y[:, None]).squeeze(1)
    if target is None:
        other = logits.clone()
        other.scatter_(1, y[:, None], float("-inf"))
        return -(zy - other.amax(dim=1)) / (srt[:, -1] - srt[:, -3] + 1e-12)
    zt = logits.gather(1, target[:, None]).squeeze(1)
    return -(zy - zt) / (srt[:, -1] - 0.5 * (srt[:, -3] + srt[:, -4]) + 1e-12)


def _step_dir(grad: Tensor, norm: str) -> Tensor:
    if norm == "linf":
        return grad.sign()
    return grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.dim() - 1)))


def _cg_beta(g_new: Tensor, g_old: Tensor, s_old: Tensor) -> Tensor:
    """Hestenes-Stiefel beta of ACG (in minimisation form on ``-grad``), clamped at 0, NaN -> 0."""
    gn, go = -g_new.flatten(1), -g_old.flatten(1)
    yv = gn - go
    beta = -(gn * yv).sum(1) / (s_old.flatten(1) * yv).sum(1)
    return torch.nan_to_num(beta.clamp(min=0), nan=0.0, posinf=0.0)


def auto_loop(model: WhiteBox, x: Tensor, y: Tensor, target: Tensor | None, *, eps: float, norm: str, steps: int,
              loss: str, rho: float, momentum: float, x0: Tensor, conjugate: bool, early_stop: bool,
              queries: Tensor, success: Tensor, x_adv: Tensor, best_loss: Tensor, idx: Tensor) -> None:
    """One AutoPGD / ACG run from ``x0`` on images ``idx``; updates ``queries``, ``success``,
    ``x_adv`` (first adversarial, else best-loss point) and ``best_loss`` in place."""
    xs = x[idx]
    n2, nmin, decr = max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)

    def evaluate(rows: Tensor, pts: Tensor) -> tuple[Tensor, Tensor]:
        pts = pts.detach().requires_grad_(True)
        gi = idx[rows]
        logits = model.logits(pts)
        lv = attack_loss(logits, y[gi], None if target is None else target[gi], loss)
        (gr,) = torch.autograd.grad(lv.sum(), pts)
        queries[gi.cpu()] += 1
        adv = is_adversarial(logits.argmax(1).detach(), y[gi], None if target is None else target[gi])
        lv = lv.detach()
        keep_best(x_adv, best_loss, success, gi, pts.detach(), lv, adv)
        return lv, gr.detach()

    def proj(p: Tensor, rows: Tensor) -> Tensor:
        # norm was checked against the attack's norms in __init__
        return (xs[rows] + project(p - xs[rows], eps, norm)).clamp(0, 1)  # type: ignore[arg-type]

    m = len(idx)
    rows_all = torch.arange(m, device=x.device)
    xk = x0.clone()
    lv, grad = evaluate(rows_all, xk)
    x_prev = xk.clone()
    x_best, g_best, l_best = xk.clone(), grad.clone(), lv.clone()
    g_old, s_old = grad.clone(), grad.clone()
    gb_old, sb_old = grad.clone(), grad.clone()
    step = torch.full((m,), 2.0 * eps, device=x.device)
    hist = torch.zeros(steps + 1, m, device=x.device)
    hist[0] = lv
    reduced_last = torch.ones(m, dtype=torch.bool, device=x.device)
    l_best_last = l_best.clone()
    live = rows_all[~success[idx]] if early_stop else rows_all
    k, counter = n2, 0
    for i in range(steps):
        if len(live) == 0:
            break
        a = 1.0 if i == 0 else momentum
        xl, gl = xk[live], grad[live]
        if conjugate:
            if i == 0:
                s = gl
            else:
                s = gl + _cg_beta(gl, g_old[live], s_old[live]).view(-1, *([1] * (x.dim() - 1))) * s_old[live]
            s_old[live], g_old[live] = s, gl
        else:
            s = gl
        st = step[live].view(-1, *([1] * (x.dim() - 1)))
        z = proj(xl + st * _step_dir(s, norm), live)
        new = proj(xl + a * (z - xl) + (1 - a) * (xl - x_prev[live]), live)
        x_prev[live] = xl
        xk[live] = new
        lv_new, g_new = evaluate(live, new)
        grad[live] = g_new
        hist[i + 1, live] = lv_new
        imp = lv_new > l_best[live]
        ui = live[imp]
        x_best[ui], g_best[ui], l_best[ui] = new[imp], g_new[imp], lv_new[imp]
        gb_old[ui], sb_old[ui] = g_old[ui], s_old[ui]
        counter += 1
        if counter == k:
            ups = (hist[i + 2 - k:i + 2] > hist[i + 1 - k:i + 1]).sum(0) if i + 1 >= k else \
                torch.zeros(m, device=x.device)
            osc = ups <= k * rho
            no_impr = ~reduced_last & (l_best_last >= l_best)
            red = osc | no_impr
            red_live = torch.zeros(m, dtype=torch.bool, device=x.device)
            red_live[live] = True
            red &= red_live
            reduced_last, l_best_last = red.clone(), l_best.clone()
            if bool(red.any()):
                step[red] /= 2.0
                xk[red], grad[red] = x_best[red], g_best[red]
                g_old[red], s_old[red] = gb_old[red], sb_old[red]
            counter, k = 0, max(k - decr, nmin)
        if early_stop:
            live = live[~success[idx[live]]]


def random_start(x: Tensor, eps: float, norm: str, g: torch.Generator) -> Tensor:
    """AutoAttack's random start: a random direction scaled to the sphere of radius ``eps``."""
    if norm == "linf":
        t = torch.rand(x.shape, generator=g, device=x.device) * 2 - 1
        t = t / t.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
    else:
        t = torch.randn(x.shape, generator=g, device=x.device)
        t = t / t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
    return (x + eps * t).clamp(0, 1)


@register_attack
class APGD(Attack):
    """AutoPGD (CE or DLR loss) on a :class:`~bbdefense.models.WhiteBox`.

    Args:
        eps: radius; ``norm``: ``"linf"`` or ``"l2"``.
        steps: iterations per restart (reference 100).
        loss: ``"ce"``, ``"dlr"`` (needs >= 3 classes, >= 4 when targeted) or ``"cw"``.
        restarts: runs from random starts (reference 1); later runs only on images not yet fooled.
        rho: oscillation threshold (0.75); ``momentum``: ``a`` (0.75).

    Shape: ``x`` ``(N, C, H, W)`` -> ``AttackResult`` (failures: the highest-loss point).
    """

    name = "apgd"
    access = "white"

    eps: float = 0.3
    norm: Literal["linf", "l2"] = "linf"
    steps: int = 100
    loss: Literal["ce", "dlr", "cw"] = "ce"
    restarts: int = 1
    rho: float = 0.75
    momentum: float = 0.75
    early_stop: bool = True
    seed: int | None = 0

    def _check(self, model: BlackBox, target: Tensor | None) -> None:
        check_white(self.name, self.eps, self.norm, ("linf", "l2"), self.steps, self.restarts)
        if self.loss not in LOSSES:
            raise InputError(f"{self.name}: loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        need = 4 if target is not None else 3
        if self.loss == "dlr" and model.num_classes < need:
            raise InputError(f"{self.name}: the dlr loss needs >= {need} classes, the model has {model.num_classes}")

    def _start(self, x: Tensor, g: torch.Generator, restart: int) -> Tensor:
        return random_start(x, self.eps, self.norm, g)

    def _run(self, model: BlackBox, x: Tensor, y: Tensor, target: Tensor | None) -> Outcome:
        wb = cast(WhiteBox, model)
        g = make_generator(self.seed, x.device)
        n = x.shape[0]
        queries = torch.zeros(n, dtype=torch.long)
        success = torch.zeros(n, dtype=torch.bool, device=x.device)
        best_loss = torch.full((n,), -math.inf, device=x.device)
        x_adv = x.clone()
        conj = self.name == "acg"
        for r in range(self.restarts):
            idx = (~success).nonzero().squeeze(1)
            if len(idx) == 0:
                break
            auto_loop(wb, x, y, target, eps=self.eps, norm=self.norm, steps=self.steps, loss=self.loss, rho=self.rho,
                      momentum=self.momentum, x0=self._start(x[idx], g, r), conjugate=conj,
                      early_stop=self.early_stop, queries=queries, success=success, x_adv=x_adv,
                      best_loss=best_loss, idx=idx)
        return white_outcome(x_adv, success, queries)
