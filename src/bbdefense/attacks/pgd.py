"""Projected gradient descent (Madry et al., ICLR 2018, arXiv 1706.06083), linf / l2 / l1, with restarts.

Objective: ``max_{||delta||_p <= eps, x + delta in [0, 1]} CE(f(x + delta), y)`` (untargeted) or
``min CE(f(x + delta), t)`` (targeted) by ``steps`` steepest-ascent steps of size ``step_size``
(sign of the gradient for linf, normalised gradient for l2, the top-(1 - sparsity) coordinates
for l1, SLIDE of Tramer & Boneh 2019), each followed by projection onto the ball and the box.
The step and the projections are the shared :mod:`bbdefense.training.pgd` (also used by
adversarial training).

Queries: every forward pass through ``WhiteBox.logits`` costs one query per image. A run costs at
most ``restarts * (steps + 1)`` per image: ``steps`` gradient evaluations and one evaluation of
the last iterate; an image stops (``early_stop``) at the first iterate that is adversarial, and
restarts run only on images not yet fooled.
"""

from __future__ import annotations

from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from ..models import BlackBox, WhiteBox
from ..training.pgd import project, random_init, steepest_step
from ..utils import make_generator
from .base import Attack, Outcome, is_adversarial, register_attack

NORMS = ("linf", "l2", "l1")


def check_white(name: str, eps: float, norm: str, norms: tuple[str, ...], steps: int, restarts: int) -> None:
    """Validate the hyperparameters the gradient attacks share."""
    if norm not in norms:
        raise InputError(f"{name}: norm must be one of {', '.join(norms)}, got {norm!r}")
    if not eps > 0:
        raise InputError(f"{name}: eps must be > 0, got {eps}")
    if not isinstance(steps, int) or steps < 1:
        raise InputError(f"{name}: steps must be an int >= 1, got {steps!r}")
    if not isinstance(restarts, int) or restarts < 1:
        raise InputError(f"{name}: restarts must be an int >= 1, got {restarts!r}")


def keep_best(x_adv: Tensor, best_loss: Tensor, success: Tensor, gi: Tensor, pts: Tensor, lv: Tensor,
              adv: Tensor) -> None:
    """The white-box attacks' bookkeeping after one evaluation of points ``pts`` ``(k, C, H, W)`` of images ``gi``
    ``(k,)`` with losses ``lv`` and verdicts ``adv`` ``(k,)``: an image not yet broken keeps its best-loss point;
    the first adversarial point of an image is kept for good (``success`` set). Updates in place."""
    better = (lv > best_loss[gi]) & ~success[gi]
    x_adv[gi[better]] = pts[better]
    best_loss[gi[better]] = lv[better]
    new = adv & ~success[gi]
    x_adv[gi[new]] = pts[new]
    success[gi[new]] = True


def white_outcome(x_adv: Tensor, success: Tensor, queries: Tensor, **extra: object) -> Outcome:
    """Package a gradient attack's outcome (the template checks the queries against the oracle's counter)."""
    return Outcome(x_adv=x_adv.detach(), success=success, queries=queries.cpu().long(), extra=dict(extra))


@register_attack
class PGD(Attack):
    """PGD with random restarts on a :class:`~bbdefense.models.WhiteBox`.

    Args:
        eps: radius in ``norm``; ``norm``: ``"linf"``, ``"l2"`` or ``"l1"``.
        steps: gradient steps per restart (Madry et al.: 40 on MNIST).
        step_size: defaults to ``2.5 eps / steps``.
        restarts: number of runs (the first from a random start when ``random_start``).
        random_start: start uniformly in the ball (linf) or at a random radius (l2/l1).
        sparsity: l1 only, fraction of coordinates not moved per step (SLIDE q = 0.99).
        early_stop: freeze an image at its first adversarial iterate.

    Shape: ``x`` ``(N, C, H, W)`` -> ``AttackResult``; failures return the highest-loss iterate.

    Example:
        >>> res = PGD(eps=0.3, steps=40).run(WhiteBox(net, input_shape=(1, 28, 28)), x, y)  # doctest: +SKIP
    """

    name = "pgd"
    access = "white"
    norms = NORMS

    eps: float = 0.3
    norm: Literal["linf", "l2", "l1"] = "linf"
    steps: int = 40
    step_size: float | None = None
    restarts: int = 1
    random_start: bool = True
    sparsity: float = 0.99
    early_stop: bool = True
    seed: int | None = 0

    def _check(self, model: BlackBox, target: Tensor | None) -> None:
        check_white(self.name, self.eps, self.norm, NORMS, self.steps, self.restarts)
        if self.step_size is not None and not self.step_size > 0:
            raise InputError(f"pgd: step_size must be > 0 or None, got {self.step_size}")

    def _run(self, model: BlackBox, x: Tensor, y: Tensor, target: Tensor | None) -> Outcome:
        wb = cast(WhiteBox, model)
        g = make_generator(self.seed, x.device)
        alpha = self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps
        n = x.shape[0]
        queries = torch.zeros(n, dtype=torch.long)
        success = torch.zeros(n, dtype=torch.bool, device=x.device)
        best_loss = torch.full((n,), -float("inf"), device=x.device)
        x_adv = x.clone()
        lab = y if target is None else target
        for r in range(self.restarts):
            idx = (~success).nonzero().squeeze(1)
            if len(idx) == 0:
                break
            xs = x[idx]
            if self.random_start or r > 0:
                delta = project(random_init(xs, self.eps, self.norm, g), self.eps, self.norm)
            else:
                delta = torch.zeros_like(xs)
            delta = ((xs + delta).clamp(0, 1) - xs).detach()
            live = torch.arange(len(idx), device=x.device)  # rows of idx still running
            for step in range(self.steps + 1):
                xr = (xs[live] + delta[live]).detach().requires_grad_(step < self.steps)
                with torch.set_grad_enabled(step < self.steps):
                    logits = wb.logits(xr)
                    loss = F.cross_entropy(logits, lab[idx[live]], reduction="none")
                    if target is not None:
                        loss = -loss
                queries[idx[live].cpu()] += 1
                gi = idx[live]
                adv = is_adversarial(logits.argmax(1), y[gi], None if target is None else target[gi])
                keep_best(x_adv, best_loss, success, gi, xr.detach(), loss.detach(), adv)
                if self.early_stop:
                    keep = ~adv
                    live, lv_keep = live[keep], keep
                else:
                    lv_keep = torch.ones_like(adv)
                if step == self.steps or len(live) == 0:
                    break
                (grad,) = torch.autograd.grad(loss.sum(), xr)
                grad = grad[lv_keep]
                with torch.no_grad():
                    d = project(delta[live] + steepest_step(grad, self.norm, alpha, self.sparsity), self.eps,
                                self.norm)
                    delta[live] = (xs[live] + d).clamp(0, 1) - xs[live]
        return white_outcome(x_adv, success, queries)
