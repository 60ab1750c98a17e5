"""Randomized Clopper-Pearson: exact coverage 1 - alpha (not merely at least), never below Cohen's bound, and
its use in Smooth.certify (seeded per image, radius >= the plain certificate's on the same counts)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import binom

from bbdefense.certify import Smooth, make_noise
from bbdefense.certify.stats import cp_lower, cp_lower_randomized
from linear_helpers import binary_linear_setup


def test_exact_coverage_by_quadrature_over_u() -> None:
    """P(L > p) = sum_k P(X = k) P_u(L(k, u) > p): computed with the implementation on a fine u grid it is
    alpha up to the grid's resolution, while the plain bound's miss rate is far below alpha."""
    n, alpha, us = 12, 0.1, (np.arange(200) + 0.5) / 200  # midpoints: error <= 1/400 in all
    for p in (0.2, 0.9):
        pmf = binom.pmf(np.arange(n + 1), n, p)
        miss = sum(pmf[k] * np.mean([cp_lower_randomized(k, n, alpha, float(u)) > p for u in us])
                   for k in range(n + 1))
        assert abs(miss - alpha) <= 2.5e-3, (p, miss)
        plain = sum(pmf[k] for k in range(n + 1) if cp_lower(k, n, alpha) > p)
        assert plain < alpha


def test_coverage_by_simulation_and_ordering() -> None:
    rng = np.random.default_rng(0)
    n, alpha, p, reps = 30, 0.05, 0.7, 1000
    ks, us = rng.binomial(n, p, reps), rng.random(reps)
    miss = sum(cp_lower_randomized(int(k), n, alpha, float(u)) > p for k, u in zip(ks, us, strict=True))
    assert binom.ppf(1e-4, reps, alpha) <= miss <= binom.ppf(1 - 1e-4, reps, alpha)
    for k in (0, 5, 29, 30):
        lows = [cp_lower_randomized(k, n, alpha, u) for u in (0.0, 0.3, 0.9, 1.0)]
        assert lows == sorted(lows, reverse=True) and lows[-1] == cp_lower(k, n, alpha)
        assert all(cp_lower(k, n, alpha) <= v <= (cp_lower(k + 1, n, alpha) if k < n else 1.0) for v in lows)


def test_smooth_randomized_certificates() -> None:
    w = torch.randn(16, generator=torch.Generator().manual_seed(0))
    bb, x = binary_linear_setup(w, 0.5 * float(w.norm()), 20, (1, 4, 4))
    sm = Smooth(bb, make_noise("gaussian", sigma=0.5), norms=("l2",))
    plain = sm.certify(x, n0=10, n=300, alpha=0.01, seed=2)
    rnd = sm.certify(x, n0=10, n=300, alpha=0.01, seed=2, randomized=True)
    again = sm.certify(x[5:], n0=10, n=300, alpha=0.01, seed=2, randomized=True, indices=range(5, 20))
    assert [c.counts for c in plain] == [c.counts for c in rnd]
    assert all(r.pA_lower >= c.pA_lower and r.radius["l2"] >= c.radius["l2"] for r, c in zip(rnd, plain, strict=True))
    assert any(r.pA_lower > c.pA_lower for r, c in zip(rnd, plain, strict=True))
    assert [c.pA_lower for c in again] == [c.pA_lower for c in rnd[5:]]  # the uniform is seeded per image
    assert {c.method for c in rnd} == {"cohen_randomized"}
