"""RayS: a ray-searching hard-label attack (Chen & Gu, KDD 2020, arXiv 2006.12792), linf.

Objective: find the closest adversarial point along a *ray direction* ``sgn`` in ``{-1, +1}^d``,
``min_sgn g(sgn)`` with ``g(sgn) = min {r : f(x + r sgn / ||sgn||_2) is adversarial}``, by a
hierarchical search over the signs: at level ``l`` the image is cut into ``2^l`` blocks and each
block's signs are flipped in turn; a flip is kept when a boundary search shows that the new ray
crosses the boundary closer than the best one so far. The linf distance of the best point is
``d_t / sqrt(d)``.

Reference: uclaml/RayS ``RayS.py`` (batch) and ``RayS_Single.py`` (early stop), commit 29bc174,
re-implemented (not copied). Conventions kept from the reference: all signs start at +1, the
first ray's distance is checked at ``d_t = inf`` (the clipped corner), bisection tolerance 1e-3
(in the ray's l2 units), every model call costs one query per image. Differences: per-image
budgets are never exceeded (a search that runs out keeps its last verified boundary point), and
images stop at ``eps`` (``early_stop``), as RayS_Single does. One extra query per image checks the
clean image first (already misclassified images succeed at distance 0).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from ..models import BlackBox
from ._decision import DecisionAttack, LabelOracle, confirm, min_norm_outcome
from .base import Outcome, register_attack


@register_attack
class RayS(DecisionAttack):
    """Batched RayS (linf, hard-label) with per-image state, budget and early stopping.

    Args:
        eps: linf radius for success (``None``: pure minimum-norm attack, runs the whole budget).
        max_queries: per-image query budget (reference ``query_limit`` 10 000).
        tol: bisection tolerance on the ray distance (reference 1e-3).
        early_stop: stop an image as soon as its distance is ``<= eps`` (RayS_Single).
        seed: unused (RayS is deterministic); kept for the common interface.

        batch_size: images per model call (resource knob; results do not depend on it).
        criterion: success on a randomized model: ``single`` (the attack's own query), ``majority``
            (more than half of ``k`` uncharged audit re-queries) or ``fooled_once``; ``fast_exp`` (RFD
            reference stop rule) re-checks an image with ``k`` uncharged re-queries when it would stop
            (within ``eps``) and, on a false alarm, forgets the noisy distance and keeps attacking along
            the current ray direction instead of stopping (reported as ``audit_queries``).

    Shape: ``x`` ``(N, C, H, W)`` -> ``AttackResult`` with ``extra["min_norm"]`` ``(N,)``, the
    linf distance of the closest adversarial found (inf if none).

    Example:
        >>> res = RayS(eps=0.3, max_queries=1000).run(label_blackbox, x, y)  # doctest: +SKIP
    """

    name = "rays"
    norms = ("linf",)

    eps: float | None = 0.3
    norm: Literal["linf"] = "linf"
    max_queries: int = 10_000
    tol: float = 1e-3
    early_stop: bool = True

    def _run(self, model: BlackBox, x: Tensor, y: Tensor, target: Tensor | None) -> Outcome:
        n = x.shape[0]
        dim = int(math.prod(x.shape[1:]))
        oracle = LabelOracle(model, y, target, self.max_queries, self.batch_size)
        own = torch.arange(n, device=x.device)
        clean_adv = oracle.is_adv(x, own)
        sgn = torch.ones(n, dim, device=x.device)
        d_t = torch.full((n,), float("inf"), device=x.device)
        d_t[clean_adv] = 0.0
        x_best = x.clone()
        found = clean_adv.clone()
        recheck = self.criterion == "fast_exp" and bool(model.randomized) and self.early_stop and self.eps is not None
        confirmed = torch.zeros(n, dtype=torch.bool, device=x.device)
        done = torch.zeros_like(clean_adv) if recheck else clean_adv.clone()
        level, block = 0, 0
        while True:
            if self.early_stop and self.eps is not None:
                dist = (x_best - x).flatten(1).abs().amax(dim=1)
                stop = found & (dist <= self.eps) & ~done
                if recheck and bool(stop.any()):
                    i = stop.nonzero().squeeze(1)
                    ok = confirm(model, x_best[i], y[i], None if target is None else target[i], self.k).to(x.device)
                    bad = i[~ok]
                    found[bad], d_t[bad], x_best[bad] = False, float("inf"), x[bad]  # false alarm: keep going
                    confirmed[i[ok]] = True
                    stop[bad] = False
                done |= stop
            active = ~done & (oracle.remaining() > 0)
            if not bool(active.any()):
                break
            size = math.ceil(dim / 2 ** level)
            start, end = block * size, min(dim, (block + 1) * size)
            idx = active.nonzero().squeeze(1)
            attempt = sgn[idx].clone()
            attempt[:, start:end] *= -1.0
            self._search(oracle, x, idx, attempt, d_t, sgn, x_best, found)
            block += 1
            if block == 2 ** level or end == dim:
                level, block = level + 1, 0
        return min_norm_outcome(self.norm, self.eps, x, x_best, found, oracle.queries, confirmed=confirmed)

    def _point(self, x: Tensor, unit: Tensor, d: Tensor) -> Tensor:
        return (x + d.view(-1, *([1] * (x.dim() - 1))) * unit.view_as(x)).clamp(0.0, 1.0)

    def _search(self, oracle: LabelOracle, x: Tensor, idx: Tensor, attempt: Tensor, d_t: Tensor, sgn: Tensor,
                x_best: Tensor, found: Tensor) -> None:
        """Reference ``binary_search``: is the new ray better than ``d_t``? If so bisect its boundary."""
        xs = x[idx]
        a_norm = attempt.norm(dim=1)
        unit = attempt / a_norm[:, None]
        cur = d_t[idx]
        hit = oracle.is_adv(self._point(xs, unit, cur), idx)
        lo = torch.zeros_like(cur)
        hi = torch.where(hit, torch.minimum(cur, a_norm), cur)
        searching = hit.clone()
        while True:
            searching &= (hi - lo) > self.tol
            searching &= oracle.remaining()[idx] > 0
            if not bool(searching.any()):
                break
            s = searching.nonzero().squeeze(1)
            mid = (lo[s] + hi[s]) / 2
            ok = oracle.is_adv(self._point(xs[s], unit[s], mid), idx[s])
            hi[s[ok]] = mid[ok]
            lo[s[~ok]] = mid[~ok]
        better = hit & (hi < cur)
        if bool(better.any()):
            b = better.nonzero().squeeze(1)
            gi = idx[b]
            d_t[gi] = hi[b]
            sgn[gi] = attempt[b]
            x_best[gi] = self._point(xs[b], unit[b], hi[b])
            found[gi] = True
