"""HopSkipJumpAttack (Chen, Jordan & Wainwright, IEEE S&P 2020, arXiv 1904.02144), l2 and linf.

Objective: minimise ``||x' - x||_p`` over adversarial ``x'`` using only top-1 labels. Each
iteration ``t`` (starting from a boundary point found by blending uniform noise into ``x``):

1. estimate the boundary's normal at the current point ``x_t`` from ``n_t = min(100 sqrt(t), 1e4)``
   random probes ``x_t + delta_t u_b`` (Gaussian directions for l2, uniform ones for linf,
   unit-normalised), ``grad = mean((phi_b - mean phi) u_b)`` (or ``+/- mean u`` when all probes
   agree), with ``delta_t = 0.1`` at ``t = 1`` then ``sqrt(d) theta dist`` (l2) / ``d theta dist``
   (linf);
2. step along ``grad`` (l2) or ``sign(grad)`` (linf) with the geometric progression
   ``eps_t = dist / sqrt(t)``, halved until the step lands on the adversarial side;
3. binary-search back to the boundary between ``x`` and the new point (blend for l2, linf
   box clipping for linf) to tolerance ``theta = gamma / d^{3/2}`` (l2) or ``gamma / d^2`` (linf).

Reference: Jianbo-Lab/HSJA ``hsja.py`` (commit 6a91456), re-implemented (not copied), with its
defaults (40 iterations, gamma 1, 100 initial probes, at most 1e4, geometric progression).
This implementation runs **all images of a batch at once** (per-image state, ragged probe counts,
one oracle call per phase for the whole batch), where the reference and ART loop over images.
The reference has no query counter: here every call goes through the model (one query per
image), each image has a hard budget ``max_queries`` that is never exceeded (the probe count is
cut to what is left; every kept point is a verified adversarial), and one clean check per image
comes first (the reference also queries the clean image for its label).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from ..errors import InputError
from ..models import BlackBox
from ..utils import make_generator
from ._decision import DecisionAttack, LabelOracle, confirm, min_norm_outcome
from .base import Outcome, lp_norm, register_attack


def _bc(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


@register_attack
class HopSkipJump(DecisionAttack):
    """Batched HopSkipJumpAttack (decision-based, l2 or linf).

    Args:
        norm: ``"l2"`` or ``"linf"``.
        eps: success radius in ``norm`` (``None``: minimum-norm attack over the whole budget).
        max_queries: per-image budget (the reference has none; 10 000 as in BlackboxBench).
        num_iterations: at most this many HSJA iterations (reference 40).
        gamma: binary-search threshold factor (reference 1.0).
        init_num_evals, max_num_evals: ``n_t = min(init sqrt(t), max)`` (reference 100 and 1e4).
        init_tries: uniform draws allowed to find an adversarial start (reference 1e4).
        early_stop: stop an image once its distance is ``<= eps``.
        max_halvings: cap of the step-size halving loop (the reference loops until success).

        batch_size: images per model call (resource knob; results do not depend on it).
        criterion: success on a randomized model (:mod:`bbdefense.attacks.criteria`): ``single``,
            ``majority`` (of ``k`` uncharged audit re-queries), ``fooled_once``, or ``fast_exp``: with
            ``early_stop`` and ``eps``, an image whose boundary point reaches ``eps`` is re-checked with
            ``k`` audit re-queries before it stops; on a false alarm it keeps iterating.

    ``run(..., target=t, x_init=starts)`` starts each image from its row of ``starts`` (e.g. an image
    of the target class, as the reference's targeted mode does) after one charged query that checks it
    is adversarial; rows that are not fall back to the uniform-noise search.

    Shape: ``x`` ``(N, C, H, W)`` -> ``AttackResult`` (``extra["min_norm"]``: distance reached).
    """

    name = "hsja"
    takes_init = True
    norms = ("l2", "linf")

    norm: Literal["l2", "linf"] = "l2"
    eps: float | None = None
    max_queries: int = 10_000
    num_iterations: int = 40
    gamma: float = 1.0
    init_num_evals: int = 100
    max_num_evals: int = 10_000
    init_tries: int = 10_000
    early_stop: bool = True
    max_halvings: int = 30

    # ------------------------------------------------------------------ helpers
    def _dist(self, a: Tensor, x: Tensor) -> Tensor:
        return lp_norm(a - x, self.norm)

    def _project(self, x: Tensor, pert: Tensor, alpha: Tensor) -> Tensor:
        a = _bc(alpha, x)
        if self.norm == "l2":
            return (1 - a) * x + a * pert
        return torch.minimum(torch.maximum(pert, x - a), x + a)

    def _boundary(self, o: LabelOracle, x: Tensor, pert: Tensor, idx: Tensor, theta: float) -> tuple[Tensor, Tensor]:
        """Reference ``binary_search_batch`` for one candidate per image (rows ``idx``).

        Returns the boundary points (``high`` side, verified adversarial) and the distances of
        ``pert`` before the search (the reference's ``dist_post_update``).
        """
        xs = x[idx]
        d_post = self._dist(pert, xs)
        if self.norm == "linf":
            hi, thr = d_post.clone(), torch.clamp(d_post * theta, max=theta)
        else:
            hi, thr = torch.ones_like(d_post), torch.full_like(d_post, theta)
        lo = torch.zeros_like(hi)
        while True:
            act = ((hi - lo) / thr > 1) & (o.remaining()[idx] > 0)
            if not bool(act.any()):
                break
            s = act.nonzero().squeeze(1)
            mid = (hi[s] + lo[s]) / 2
            ok = o.is_adv(self._project(xs[s], pert[s], mid), idx[s])
            lo[s[~ok]] = mid[~ok]
            hi[s[ok]] = mid[ok]
        return self._project(xs, pert, hi).clamp(0, 1), d_post

    def _initialize(self, o: LabelOracle, x: Tensor, need: Tensor, g: torch.Generator,
                    x_init: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Start points: ``x_init`` rows that are adversarial (one charged query each, as the reference
        checks its target image), else uniform noise until adversarial; then a blend binary search
        toward ``x`` (tol 1e-3)."""
        noise = x.clone()
        ok_all = torch.zeros_like(need)
        need = need.clone()
        if x_init is not None:
            s = (need & (o.remaining() > 0)).nonzero().squeeze(1)
            if len(s):
                ok = o.is_adv(x_init[s], s)
                noise[s[ok]] = x_init[s[ok]]
                ok_all[s[ok]] = True
                need[s[ok]] = False
        for _ in range(self.init_tries):
            s = (need & (o.remaining() > 0)).nonzero().squeeze(1)
            if len(s) == 0:
                break
            cand = torch.rand((len(s), *x.shape[1:]), generator=g, device=x.device)
            ok = o.is_adv(cand, s)
            noise[s[ok]] = cand[ok]
            ok_all[s[ok]] = True
            need[s[ok]] = False
        lo = torch.zeros(len(x), device=x.device)
        hi = torch.ones(len(x), device=x.device)
        while True:
            s = (ok_all & (hi - lo > 1e-3) & (o.remaining() > 0)).nonzero().squeeze(1)
            if len(s) == 0:
                break
            mid = (hi[s] + lo[s]) / 2
            m = _bc(mid, x)
            ok = o.is_adv((1 - m) * x[s] + m * noise[s], s)
            hi[s[ok]] = mid[ok]
            lo[s[~ok]] = mid[~ok]
        h = _bc(hi, x)
        return (1 - h) * x + h * noise, ok_all

    def _gradient(self, o: LabelOracle, pert: Tensor, idx: Tensor, n_evals: Tensor, delta: Tensor,
                  g: torch.Generator) -> Tensor:
        """Monte-Carlo boundary-normal estimate with a ragged number of probes per image."""
        owner_local = torch.repeat_interleave(torch.arange(len(idx), device=pert.device), n_evals)
        m = len(owner_local)
        shape = (m, *pert.shape[1:])
        if self.norm == "l2":
            rv = torch.randn(shape, generator=g, device=pert.device)
        else:
            rv = torch.rand(shape, generator=g, device=pert.device) * 2 - 1
        rv = rv / _bc(rv.flatten(1).norm(dim=1), rv)
        base = pert[owner_local]
        dl = _bc(delta[owner_local], rv)
        probe = (base + dl * rv).clamp(0, 1)
        rv = (probe - base) / dl
        fval = o.is_adv(probe, idx[owner_local]).float() * 2 - 1
        k = len(idx)
        cnt = n_evals.to(rv.dtype)
        fmean = torch.zeros(k, device=pert.device).index_add_(0, owner_local, fval) / cnt
        centred = fval - fmean[owner_local]
        all_same = (fmean.abs() == 1.0)
        w = torch.where(all_same[owner_local], fmean[owner_local], centred)  # +-1 or centred value
        flat = rv.flatten(1) * w[:, None]
        grad = torch.zeros(k, flat.shape[1], device=pert.device).index_add_(0, owner_local, flat) / cnt[:, None]
        grad = grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-20)
        return grad.view(k, *pert.shape[1:])

    # ------------------------------------------------------------------ main loop
    def _check(self, model: BlackBox, target: Tensor | None) -> None:
        super()._check(model, target)
        if self.init_num_evals < 1 or self.max_num_evals < self.init_num_evals:
            raise InputError(f"hsja: need 1 <= init_num_evals <= max_num_evals, got {self.init_num_evals} and "
                             f"{self.max_num_evals}")

    def _run(self, model: BlackBox, x: Tensor, y: Tensor, target: Tensor | None,
             x_init: Tensor | None = None) -> Outcome:
        g = make_generator(self.seed, x.device)
        n = x.shape[0]
        d = int(math.prod(x.shape[1:]))
        theta = self.gamma / (d * math.sqrt(d)) if self.norm == "l2" else self.gamma / d ** 2
        o = LabelOracle(model, y, target, self.max_queries, self.batch_size)
        clean_adv = o.is_adv(x, torch.arange(n, device=x.device))
        init, started = self._initialize(o, x, ~clean_adv, g, x_init)
        pert = torch.where(_bc(clean_adv, x), x, init)
        dist_post = torch.zeros(n, device=x.device)
        s = started.nonzero().squeeze(1)
        if len(s):
            pert[s], dist_post[s] = self._boundary(o, x, init[s], s, theta)
        found = clean_adv | started
        dist = self._dist(pert, x)
        x_best, best = pert.clone(), dist.clone()
        recheck = (self.criterion == "fast_exp" and bool(model.randomized) and self.early_stop
                   and self.eps is not None)
        confirmed = torch.zeros(n, dtype=torch.bool, device=x.device)
        for t in range(1, self.num_iterations + 1):
            act = started & (o.remaining() > 0)
            if recheck:  # fast_exp: confirm the boundary point before stopping, else keep iterating
                stop = (act & (dist <= float(self.eps or 0.0)) & ~confirmed).nonzero().squeeze(1)
                if len(stop):
                    ok = confirm(model, pert[stop], y[stop], None if target is None else target[stop],
                                 self.k).to(x.device)
                    c = stop[ok]
                    confirmed[c] = True
                    x_best[c], best[c] = pert[c], dist[c]  # the confirmed point is the result
                act &= ~confirmed
            elif self.early_stop and self.eps is not None:
                act &= dist > self.eps
            idx = act.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            if t == 1:
                delta = torch.full((len(idx),), 0.1, device=x.device)
            else:
                fac = math.sqrt(d) if self.norm == "l2" else float(d)
                delta = fac * theta * dist_post[idx]
            n_t = int(min(self.init_num_evals * math.sqrt(t), self.max_num_evals))
            n_evals = o.remaining()[idx].clamp(max=n_t)
            grad = self._gradient(o, pert[idx], idx, n_evals, delta.clamp_min(1e-12), g)
            update = grad.sign() if self.norm == "linf" else grad
            # geometric progression for the step size
            eps_t = dist[idx] / math.sqrt(t)
            good = torch.zeros(len(idx), dtype=torch.bool, device=x.device)
            for _ in range(self.max_halvings):
                s = (~good & (o.remaining()[idx] > 0)).nonzero().squeeze(1)
                if len(s) == 0:
                    break
                ok = o.is_adv(pert[idx[s]] + _bc(eps_t[s], x) * update[s], idx[s])
                good[s[ok]] = True
                eps_t[s[~ok]] /= 2.0
            if not bool(good.any()):
                continue
            gi = idx[good]
            stepped = (pert[gi] + _bc(eps_t[good], x) * update[good]).clamp(0, 1)
            pert[gi], dist_post[gi] = self._boundary(o, x, stepped, gi, theta)
            dist[gi] = self._dist(pert[gi], x[gi])
            better = dist < best
            x_best[better], best[better] = pert[better], dist[better]
        return min_norm_outcome(self.norm, self.eps, x, x_best, found, o.queries,
                                confirmed=confirmed if recheck else None)
