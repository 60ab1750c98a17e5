"""Sign Flip Attack (Chen, Wang, Cheng, Wang & Zheng, ECCV 2020, arXiv 2001.01617), linf, hard-label.

Objective: shrink ``||delta||_inf`` of an adversarial ``x + delta`` while staying adversarial.
Start from a uniform random adversarial image, binary-search it toward ``x`` in the linf sense,
then repeat two label-only proposals per iteration and keep each one that is still adversarial:

* projection step: ``delta_p = Proj_{||.||_inf <= ||delta||_inf - alpha}(delta + alpha sign(N(0, I)))``;
* random sign flip: ``delta_s = delta * s`` with ``s_i = +1`` with probability ``prob_i`` and
  ``-1`` otherwise; after a success ``prob -= s * 1e-4`` (clamped to [0.99, 0.9999]).

Every 10 iterations ``alpha`` is multiplied by 1.5 where the projection success rate exceeds 0.7
and divided by 1.5 where it is below 0.3; ``prob`` moves by -/+ 0.001 with the flip success rate.

Reference: cwllenny/Sign-Flip-Attack ``SFA.py`` (commit 6b32333), re-implemented (not copied).
Query count (as the reference's ``Q``): 2 per iteration, 10 for the binary search, plus the
initialisation draws (the reference does not count those; the oracle does, so we report them),
plus 1 clean check per image. Differences: per-image random streams from one seeded generator,
per-image budgets never exceeded (the iteration stops for an image with fewer than 2 queries
left), the stop test uses the distance of the clipped image.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from ..models import BlackBox
from ..utils import make_generator
from ._decision import DecisionAttack, LabelOracle, confirm, min_norm_outcome
from .base import Outcome, register_attack


def _resize(t: Tensor, h: int, w: int) -> Tensor:
    return t if t.shape[-2:] == (h, w) else F.interpolate(t, size=[h, w], mode="bilinear", align_corners=False)


@register_attack
class SignFlip(DecisionAttack):
    """Batched Sign Flip Attack with per-image state.

    Args:
        eps: linf success radius (``None``: run the whole budget as a minimum-norm attack).
        max_queries: per-image budget (reference default 1000).
        alpha: initial projection step (reference 0.004); ``prob``: initial keep-sign probability (0.999).
        resize_factor: >= 1; proposals are drawn at ``H / resize_factor`` and upsampled (reference 1).
        init_tries: at most this many uniform draws to find an adversarial start (reference 10 000).
        bs_steps: linf binary-search steps after initialisation (reference 10).

        batch_size: images per model call (resource knob; results do not depend on it).
        criterion: success on a randomized model (:mod:`bbdefense.attacks.criteria`): ``single``,
            ``majority`` (of ``k`` uncharged audit re-queries), ``fooled_once``, or ``fast_exp``: when an
            image reaches ``eps`` its point is re-checked with ``k`` audit re-queries; on a false alarm
            the image keeps being attacked (and is re-checked whenever it would stop again).

    ``run(..., target=t, x_init=starts)`` starts each image from its row of ``starts`` (the reference's
    targeted mode starts from an image of the target class) after one charged check; rows that are
    not adversarial fall back to uniform draws.

    Shape: ``x`` ``(N, C, H, W)`` -> ``AttackResult`` (``extra["min_norm"]``: linf distance reached).
    """

    name = "signflip"
    takes_init = True
    norms = ("linf",)

    eps: float | None = 0.3
    norm: Literal["linf"] = "linf"
    max_queries: int = 1000
    alpha: float = 0.004
    prob: float = 0.999
    resize_factor: float = 1.0
    init_tries: int = 10_000
    bs_steps: int = 10

    def _check(self, model: BlackBox, target: Tensor | None) -> None:
        super()._check(model, target)
        if not self.alpha > 0:
            raise InputError(f"signflip: alpha must be > 0, got {self.alpha}")
        if not 0.0 < self.prob < 1.0:
            raise InputError(f"signflip: prob must be in (0, 1), got {self.prob}")
        if not self.resize_factor >= 1.0:
            raise InputError(f"signflip: resize_factor must be >= 1, got {self.resize_factor}")

    def _run(self, model: BlackBox, x: Tensor, y: Tensor, target: Tensor | None,
             x_init: Tensor | None = None) -> Outcome:
        g = make_generator(self.seed, x.device)
        n, c, h, w = x.shape
        hd, wd = int(h // self.resize_factor), int(w // self.resize_factor)
        oracle = LabelOracle(model, y, target, self.max_queries, self.batch_size)
        all_idx = torch.arange(n, device=x.device)
        found = oracle.is_adv(x, all_idx)  # clean check
        x_a = x.clone()
        need = ~found
        if x_init is not None:  # given starts (the reference's targeted mode starts from a target-class image)
            idx = (need & (oracle.remaining() > 0)).nonzero().squeeze(1)
            if len(idx):
                ok = oracle.is_adv(x_init[idx], idx)
                x_a[idx[ok]] = x_init[idx[ok]]
                need[idx[ok]] = False
        # uniform random start, redrawn for images not yet adversarial (counted draws)
        tries = 0
        while bool(need.any()) and tries < self.init_tries:
            need &= oracle.remaining() > 0
            idx = need.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            cand = torch.rand((len(idx), c, h, w), generator=g, device=x.device)
            ok = oracle.is_adv(cand, idx)
            x_a[idx[ok]] = cand[ok]
            need[idx[ok]] = False
            tries += 1
        started = ~found & ~need & (x_a != x).flatten(1).any(dim=1)
        delta = x_a - x
        # linf binary search toward x (reference binary_infinity), 1 query per step
        lo = torch.zeros(n, device=x.device)
        hi = delta.flatten(1).abs().amax(dim=1)
        for _ in range(self.bs_steps):
            s = (started & (oracle.remaining() > 0)).nonzero().squeeze(1)
            if len(s) == 0:
                break
            mid = (lo[s] + hi[s]) / 2
            m4 = mid.view(-1, 1, 1, 1)
            ok = oracle.is_adv(torch.maximum(x[s] - m4, torch.minimum(x_a[s], x[s] + m4)), s)
            hi[s[ok]] = mid[ok]
            lo[s[~ok]] = mid[~ok]
        h4 = hi.view(-1, 1, 1, 1)
        delta = torch.where(started.view(-1, 1, 1, 1),
                            torch.maximum(x - h4, torch.minimum(x_a, x + h4)).clamp(0, 1) - x, torch.zeros_like(x))
        found |= started
        alpha = torch.full((n,), float(self.alpha), device=x.device)
        prob = torch.full((n, c, hd, wd), float(self.prob), device=x.device)
        proj_rate = torch.zeros(n, device=x.device)
        flip_rate = torch.zeros(n, device=x.device)
        reset = 0
        recheck = self.criterion == "fast_exp" and bool(model.randomized) and self.eps is not None
        confirmed = torch.zeros(n, dtype=torch.bool, device=x.device)
        while True:
            dist = ((x + delta).clamp(0, 1) - x).flatten(1).abs().amax(dim=1)
            todo = started & (oracle.remaining() >= 2)
            if self.eps is not None and recheck:  # fast_exp: confirm before stopping, else keep attacking
                stop = (todo & (dist <= self.eps) & ~confirmed).nonzero().squeeze(1)
                if len(stop):
                    ok = confirm(model, (x[stop] + delta[stop]).clamp(0, 1), y[stop],
                                 None if target is None else target[stop], self.k).to(x.device)
                    confirmed[stop[ok]] = True
                todo &= ~confirmed
            elif self.eps is not None:
                todo &= dist > self.eps
            if not bool(todo.any()):
                break
            reset += 1
            u = todo.nonzero().squeeze(1)
            xu, du = x[u], delta[u]
            # (a) projection step
            eta = torch.randn((len(u), c, hd, wd), generator=g, device=x.device).sign() * alpha[u].view(-1, 1, 1, 1)
            eta = _resize(eta, h, w)
            lvl = (du.flatten(1).abs().amax(dim=1) - alpha[u]).view(-1, 1, 1, 1)
            d_p = torch.maximum(-lvl, torch.minimum(du + eta, lvl))
            ok = oracle.is_adv(xu + d_p, u)
            du = torch.where(ok.view(-1, 1, 1, 1), d_p, du)
            proj_rate[u] += ok.float()
            # (b) random sign flip
            s = torch.bernoulli(prob[u], generator=g) * 2 - 1
            d_s = du * _resize(s, h, w).sign()
            ok = oracle.is_adv(xu + d_s, u)
            pu = prob[u]
            pu[ok] -= s[ok] * 1e-4
            prob[u] = pu.clamp(0.99, 0.9999)
            flip_rate[u] += ok.float()
            du = torch.where(ok.view(-1, 1, 1, 1), d_s, du)
            delta[u] = du
            if reset % 10 == 0:
                pr, fr = proj_rate / reset, flip_rate / reset
                alpha = torch.where(pr > 0.7, alpha * 1.5, torch.where(pr < 0.3, alpha / 1.5, alpha))
                prob[fr > 0.7] -= 0.001
                prob[fr < 0.3] += 0.001
                prob.clamp_(0.99, 0.9999)
                reset = 0
                proj_rate.zero_()
                flip_rate.zero_()
        x_best = (x + delta).clamp(0, 1)
        return min_norm_outcome(self.norm, self.eps, x, x_best, found, oracle.queries,
                                confirmed=confirmed if recheck else None)
