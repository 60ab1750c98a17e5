"""The Clopper-Pearson interval of the evaluation layer: exact values and coverage."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import beta

from bbdefense.errors import InputError
from bbdefense.evaluation.intervals import proportion_ci


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (27, 30), (1, 1)])
def test_exact_two_sided_interval(k: int, n: int) -> None:
    lo, hi = proportion_ci(k, n)
    assert lo == pytest.approx(0.0 if k == 0 else beta.ppf(0.025, k, n - k + 1))
    assert hi == pytest.approx(1.0 if k == n else beta.ppf(0.975, k + 1, n - k))
    assert lo <= k / n <= hi
    narrow = proportion_ci(k, n, level=0.5)
    assert lo <= narrow[0] and narrow[1] <= hi


def test_coverage_is_at_least_the_level() -> None:
    """Over 2,000 binomial draws the interval misses the true p at most ~5% of the time (exact intervals
    are conservative; 4 standard errors of slack)."""
    g = torch.Generator().manual_seed(0)
    cis = [proportion_ci(k, 30) for k in range(31)]
    for p in (0.1, 0.5, 0.93):
        ks = torch.binomial(torch.full((2000,), 30.0), torch.full((2000,), p), generator=g).long().tolist()
        miss = sum(1 for k in ks if not (cis[k][0] <= p <= cis[k][1]))
        assert miss / 2000 <= 0.05 + 4 * math.sqrt(0.05 * 0.95 / 2000)


def test_edge_cases() -> None:
    assert all(math.isnan(v) for v in proportion_ci(0, 0))
    with pytest.raises(InputError, match="level"):
        proportion_ci(1, 2, level=1.0)
    with pytest.raises(InputError, match="k must be"):
        proportion_ci(3, 2)
