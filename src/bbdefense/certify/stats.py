"""Exact binomial statistics of randomized smoothing (Cohen et al., ICML 2019, §3.2 and Appendix).

* :func:`cp_lower`: the one-sided (1 - alpha) Clopper-Pearson lower confidence bound on a binomial
  proportion. Equals ``scipy.stats.beta.ppf(alpha, k, n - k + 1)`` exactly, i.e. statsmodels'
  ``proportion_confint(k, n, alpha=2 * alpha, method="beta")[0]`` as used by locuslab/smoothing
  ``core.py`` (commit 78a4d94) and ART; without the statsmodels dependency.
* :func:`cp_upper`: the matching one-sided upper bound.
* :func:`binom_pvalue`: the two-sided binomial test of PREDICT, ``binomtest(nA, nA + nB, 0.5).pvalue``
  (``scipy.stats.binom_test`` was removed from SciPy; pitfall 6).
"""

from __future__ import annotations

import math

from scipy.stats import beta, binomtest

from ..errors import InputError


def _check(k: int, n: int, alpha: float) -> None:
    if not (isinstance(n, int) and n >= 1):
        raise InputError(f"n must be a positive integer, got {n!r}")
    if not (isinstance(k, int) and 0 <= k <= n):
        raise InputError(f"k must be an integer in [0, n={n}], got {k!r}")
    if not (0.0 < alpha < 1.0) or not math.isfinite(alpha):
        raise InputError(f"alpha must be in (0, 1), got {alpha!r}")


def cp_lower(k: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower bound on p from k successes in n trials.

    ``P(p >= cp_lower(k, n, alpha)) >= 1 - alpha`` for every p. Returns 0.0 when ``k == 0``.
    """
    k, n = int(k), int(n)
    _check(k, n, alpha)
    if k == 0:
        return 0.0
    return float(beta.ppf(alpha, k, n - k + 1))


def cp_upper(k: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson upper bound on p. Returns 1.0 when ``k == n``."""
    k, n = int(k), int(n)
    _check(k, n, alpha)
    if k == n:
        return 1.0
    return float(beta.ppf(1.0 - alpha, k + 1, n - k))


def binom_pvalue(n_a: int, n_b: int) -> float:
    """Two-sided p-value of ``H0: P(A) = P(B)`` given the top-two counts (Cohen PREDICT).

    PREDICT abstains when this p-value exceeds alpha. ``n_a + n_b == 0`` gives 1.0.
    """
    n_a, n_b = int(n_a), int(n_b)
    if n_a < 0 or n_b < 0:
        raise InputError(f"counts must be >= 0, got {n_a}, {n_b}")
    if n_a + n_b == 0:
        return 1.0
    return float(binomtest(n_a, n_a + n_b, 0.5).pvalue)


def min_samples_to_certify(alpha: float) -> int:
    """Smallest n for which n/n successes give ``cp_lower > 1/2`` (ART/Cohen users pick n too small:
    with n = 10 and alpha = 0.001 nothing can ever be certified)."""
    if not (0.0 < alpha < 1.0):
        raise InputError(f"alpha must be in (0, 1), got {alpha!r}")
    # cp_lower(n, n, alpha) = alpha ** (1 / n) > 1/2  <=>  n > log(alpha) / log(1/2)
    return math.floor(math.log(alpha) / math.log(0.5)) + 1


__all__ = ["binom_pvalue", "cp_lower", "cp_upper", "min_samples_to_certify"]
