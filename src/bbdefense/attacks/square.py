"""Square Attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020; arXiv 1912.00049).

Random search over square-shaped updates at the vertices of the linf ball (or pseudo-Gaussian
bumps on the l2 sphere). Reference: max-andr/square-attack ``attack.py`` (commit a9d0ef3, checked
against ea95eeb), read and re-implemented (no code copied).

Objective: minimise the margin ``score_y - max_{j != y} score_j`` (untargeted) or the
cross-entropy of the target class (targeted) over ``||x_adv - x|| <= eps``, ``x_adv`` in [0, 1].
Success: margin ``<= 0`` (untargeted), target margin ``>= 0`` (targeted).

Differences from the reference, on purpose:

* every image draws its own square positions (and, for l2, its own bump orientation); the
  reference draws one l2 window per iteration for the whole batch (and ART one linf square);
* ``torch.Generator`` seeded by ``seed`` instead of ``np.random.seed(0)``;
* the loop is per-image budgeted: ``max_queries`` = the reference's ``n_iters`` (1 query at init
  + 1 per iteration per still-unbroken image), and ``p_selection`` is rescaled to it (pitfall 13).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from ..errors import InputError
from ._score import Ledger, ScoreAttack, ce_loss, idx_of
from .base import margin_loss, register_attack


def p_selection(p_init: float, it: int, n_iters: int) -> float:
    """The reference's piecewise-constant schedule of the fraction of pixels changed, rescaled to ``n_iters``."""
    it = int(it / n_iters * 10000)
    for hi, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128),
                    (8000, 256), (10000, 512)):
        if it <= hi:
            return p_init / div
    return p_init


def _rect_bump(a: int, b: int) -> Tensor:
    """``pseudo_gaussian_pert_rectangles``: nested rectangles weighted ``1/(k+1)^2``, unit l2 norm. ``(a, b)``."""
    d = torch.zeros(a, b, dtype=torch.float64)
    ca, cb = a // 2, b // 2
    for k in range(max(a // 2 + 1, b // 2 + 1)):
        d[max(ca - k, 0):min(ca - k + 2 * k + 1, a), max(cb - k, 0):min(cb - k + 2 * k + 1, b)] += 1.0 / (k + 1) ** 2
    n = d.norm()
    return d / n if n > 0 else d


def meta_bump(s: int) -> Tensor:
    """``meta_pseudo_gaussian_pert``: two opposite-sign half bumps, unit l2 norm (untransposed). ``(s, s)``."""
    d = torch.zeros(s, s, dtype=torch.float64)
    d[: s // 2] = _rect_bump(s // 2, s)
    d[s // 2:] = -_rect_bump(s - s // 2, s)
    return (d / d.norm()).float()


def _index(n: int, rows: Tensor, cols: Tensor, s: int) -> tuple[Tensor, Tensor, Tensor]:
    ar = torch.arange(s, device=rows.device)
    return (torch.arange(n, device=rows.device)[:, None, None], (rows[:, None] + ar)[:, :, None],
            (cols[:, None] + ar)[:, None, :])


def crop(t: Tensor, rows: Tensor, cols: Tensor, s: int) -> Tensor:
    """Per-image ``s x s`` windows with top-left ``(rows[i], cols[i])``: ``(N, C, H, W) -> (N, C, s, s)``."""
    i, r, c = _index(t.shape[0], rows, cols, s)
    return t.permute(0, 2, 3, 1)[i, r, c].permute(0, 3, 1, 2)


def paste(t: Tensor, patch: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """A copy of ``t`` with each image's window replaced by ``patch`` ``(N, C, s, s)``."""
    out = t.permute(0, 2, 3, 1).clone()
    i, r, c = _index(t.shape[0], rows, cols, patch.shape[-1])
    out[i, r, c] = patch.permute(0, 2, 3, 1)
    return out.permute(0, 3, 1, 2).contiguous()


def window_mask(n: int, h: int, w: int, rows: Tensor, cols: Tensor, s: int) -> Tensor:
    """Bool mask ``(N, 1, H, W)`` of each image's window."""
    rh = torch.arange(h, device=rows.device)[None, :]
    rw = torch.arange(w, device=rows.device)[None, :]
    mr = (rh >= rows[:, None]) & (rh < rows[:, None] + s)
    mc = (rw >= cols[:, None]) & (rw < cols[:, None] + s)
    return (mr[:, :, None] & mc[:, None, :])[:, None]


@register_attack
class Square(ScoreAttack):
    """Square Attack, linf and l2, untargeted (margin loss) and targeted (CE loss).

    Args:
        norm: ``"linf"`` or ``"l2"``.
        eps: radius of the ball (pixel scale [0, 1]); default 0.3 (linf, MNIST) / 2.0 (l2).
        max_queries: per-image budget = the reference's ``n_iters`` (1 init + 1 per iteration).
        p_init: initial fraction of pixels changed; 0.05 (linf), 0.1 (l2) in the reference
            (0.3 robust models, 0.8 Madry MNIST). ``None`` picks 0.05 / 0.1 by ``norm``.
        criterion, k: success on randomized models (``single`` | ``majority`` of ``k`` | ``fooled_once`` |
            ``fast_exp``: re-check every claimed success with ``k`` re-queries, continue on a false alarm).
        seed: seed of the attack's own ``torch.Generator``.

    Shape: ``x`` ``(N, C, H, W)`` in [0, 1], ``y`` ``(N,)`` -> :class:`AttackResult`.
    Queries: 1 at init + 1 per iteration for each still-unbroken image (the reference's count).

    References: Andriushchenko et al., "Square Attack: a query-efficient black-box adversarial
    attack via random search", ECCV 2020. Code: github.com/max-andr/square-attack.
    """

    name = "square"
    default_eps: ClassVar[dict[str, float]] = {"linf": 0.3, "l2": 2.0}

    p_init: float | None = None

    def _check_params(self) -> None:
        if self.p_init is not None and not 0 < self.p_init <= 1:
            raise InputError(f"square: p_init must be in (0, 1], got {self.p_init!r}")

    def _eps(self) -> float:
        return float(self.eps) if self.eps is not None else self.default_eps[self.norm]

    def _attack(self, led: Ledger) -> Tensor:
        x = led.x
        if x.shape[2] < 2 or x.shape[3] < 2:
            raise InputError(f"square: images must be at least 2x2, got {tuple(x.shape[2:])}")
        if self.norm == "l2" and min(x.shape[2:]) < 5:
            raise InputError(f"square l2: images must be at least 5x5, got {tuple(x.shape[2:])}")
        p_init = self.p_init if self.p_init is not None else (0.05 if self.norm == "linf" else 0.1)
        eps = self._eps()
        x_best = self._init(led, eps)
        n_iters = led.n_steps
        act0 = idx_of(led.can(1))
        if len(act0) == 0:
            return x_best
        lp = led.query(x_best[act0], act0)
        loss_min = torch.full((len(x),), math.inf, device=x.device)
        margin_min = torch.full((len(x),), math.inf, device=x.device)
        loss_min[act0], margin_min[act0] = self._losses(led, lp, act0)
        led.mark(lp, act0, x_best[act0])
        step = self._step_linf if self.norm == "linf" else self._step_l2
        for i in range(n_iters - 1):
            act = idx_of(led.can(1))
            if len(act) == 0:
                break
            p = p_selection(p_init, i, n_iters)
            x_new = step(led, x[act], x_best[act], p, eps)
            lp = led.query(x_new, act)
            loss, margin = self._losses(led, lp, act)
            better = loss < loss_min[act]
            loss_min[act] = torch.where(better, loss, loss_min[act])
            margin_min[act] = torch.where(better, margin, margin_min[act])
            x_best[act] = torch.where(better[:, None, None, None], x_new, x_best[act])
            led.mark(lp[better], act[better], x_new[better])
        return x_best

    def _losses(self, led: Ledger, lp: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
        if led.target is None:
            m = margin_loss(lp, led.y[idx])
            return m, m
        t = led.target[idx]
        return ce_loss(lp, t), -margin_loss(lp, t)

    def _init(self, led: Ledger, eps: float) -> Tensor:
        x, g = led.x, led.g
        n, c, h, w = x.shape
        if self.norm == "linf":  # vertical stripes, one sign per (image, channel, column)
            signs = torch.randint(0, 2, (n, c, 1, w), generator=g, device=x.device).float() * 2 - 1
            return (x + eps * signs).clamp(0, 1)
        s = h // 5
        sp = (h - s * 5) // 2
        delta = torch.zeros_like(x)
        bump = meta_bump(s).to(x.device)
        for r in range(sp, sp + s * (h // s), s):
            for col in range(sp, sp + s * (w // s), s):
                if r + s > h or col + s > w:
                    continue
                tr = torch.rand(n, generator=g, device=x.device) > 0.5
                b = torch.where(tr[:, None, None], bump.T, bump)[:, None]
                sign = torch.randint(0, 2, (n, c, 1, 1), generator=g, device=x.device).float() * 2 - 1
                delta[:, :, r:r + s, col:col + s] += b * sign
        norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return (x + delta / norm * eps).clamp(0, 1)

    def _step_linf(self, led: Ledger, x: Tensor, x_best: Tensor, p: float, eps: float) -> Tensor:
        g = led.g
        n, c, h, w = x.shape
        s = min(max(round(math.sqrt(p * c * h * w / c)), 1), h - 1)
        rows = torch.randint(0, h - s, (n,), generator=g, device=x.device)
        cols = torch.randint(0, w - s, (n,), generator=g, device=x.device)
        mask = window_mask(n, h, w, rows, cols, s)
        deltas = x_best - x
        x_win = crop(x, rows, cols, s)
        best_win = crop(x_best, rows, cols, s)
        signs = torch.zeros(n, c, 1, 1, device=x.device)
        todo = torch.ones(n, dtype=torch.bool, device=x.device)
        for _ in range(100):  # resample while the square would not change x_best (reference's while loop)
            new = torch.randint(0, 2, (n, c, 1, 1), generator=g, device=x.device).float() * 2 - 1
            signs = torch.where(todo[:, None, None, None], new * eps, signs)
            same = ((x_win + signs).clamp(0, 1) - best_win).abs().flatten(1).lt(1e-7).all(dim=1)
            todo = todo & same
            if not bool(todo.any()):
                break
        deltas = torch.where(mask, signs.expand(n, c, 1, 1), deltas)
        return (x + deltas).clamp(0, 1)

    def _step_l2(self, led: Ledger, x: Tensor, x_best: Tensor, p: float, eps: float) -> Tensor:
        g = led.g
        n, c, h, w = x.shape
        s = max(round(math.sqrt(p * c * h * w / c)), 3)
        if s % 2 == 0:
            s += 1
        s = min(s, h - 1 if (h - 1) % 2 else h - 2)
        dev = x.device
        r1, c1 = (torch.randint(0, h - s, (n,), generator=g, device=dev),
                  torch.randint(0, w - s, (n,), generator=g, device=dev))
        r2, c2 = (torch.randint(0, h - s, (n,), generator=g, device=dev),
                  torch.randint(0, w - s, (n,), generator=g, device=dev))
        m1 = window_mask(n, h, w, r1, c1, s)
        m2 = window_mask(n, h, w, r2, c2, s)
        delta = x_best - x
        norm_win1 = (delta * m1).pow(2).sum(dim=(2, 3), keepdim=True).sqrt()          # (n, c, 1, 1)
        norm_img = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        norm_wins = (delta * (m1 | m2)).pow(2).sum(dim=(2, 3), keepdim=True).sqrt()  # (n, c, 1, 1)
        bump = meta_bump(s).to(dev)
        tr = torch.rand(n, generator=g, device=dev) > 0.5
        new = torch.where(tr[:, None, None], bump.T, bump)[:, None].expand(n, c, s, s)
        new = new * (torch.randint(0, 2, (n, c, 1, 1), generator=g, device=dev).float() * 2 - 1)
        new = new + crop(delta, r1, c1, s) / (1e-10 + norm_win1)
        new = new / new.pow(2).sum(dim=(2, 3), keepdim=True).sqrt().clamp_min(1e-12)
        new = new * ((eps ** 2 - norm_img ** 2).clamp_min(0) / c + norm_wins ** 2).sqrt()
        delta = paste(delta * ~m2, new, r1, c1)
        dn = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return (x + delta / dn * eps).clamp(0, 1)


__all__ = ["Square", "crop", "meta_bump", "p_selection", "paste", "window_mask"]
