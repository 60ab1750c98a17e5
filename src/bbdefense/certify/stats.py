"""Exact binomial statistics of randomized smoothing (Cohen et al., ICML 2019, §3.2 and Appendix).

* :func:`cp_lower`: the one-sided (1 - alpha) Clopper-Pearson lower confidence bound on a binomial
  proportion. Equals ``scipy.stats.beta.ppf(alpha, k, n - k + 1)`` exactly, i.e. statsmodels'
  ``proportion_confint(k, n, alpha=2 * alpha, method="beta")[0]`` as used by locuslab/smoothing
  ``core.py`` (commit 78a4d94) and ART; without the statsmodels dependency.
* :func:`cp_upper`: the matching one-sided upper bound.
* :func:`cp_lower_randomized`: the randomized (exact) Clopper-Pearson lower bound (Stevens 1950; Voráček,
  NeurIPS 2024, arXiv 2406.17830, §3: strictly stronger certificates at the same n and alpha).
* :func:`binom_pvalue`: the two-sided binomial test of PREDICT, ``binomtest(nA, nA + nB, 0.5).pvalue``
  (``scipy.stats.binom_test`` was removed from SciPy; pitfall 6).
"""

from __future__ import annotations

import math

from scipy.optimize import brentq
from scipy.stats import beta, binom, binomtest

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


def cp_lower_randomized(k: int, n: int, alpha: float, u: float) -> float:
    """Randomized one-sided (1 - alpha) lower bound on p from k successes in n trials and ``u ~ U(0, 1)``.

    The bound is the root in p of ``g(p) = P_p(X > k) + u P_p(X = k) = alpha`` (the randomized test's p-value
    equals alpha). **Guarantee (exact coverage):** ``g`` is increasing in p, so ``L > p`` iff ``g(p) < alpha``;
    under the true p the randomized p-value ``P_p(X > k) + u P_p(X = k)`` of ``(X, u)`` is exactly U(0, 1)
    (it spreads the atom of each outcome uniformly), hence ``P(L > p) = alpha`` exactly, for every p: the
    coverage is 1 - alpha, not merely at least. ``u = 1`` gives :func:`cp_lower`; every ``u < 1`` gives a
    larger bound, so the certificate is never weaker than Cohen's for the same counts. ``u`` must be drawn
    independently of the counts (seed it per image). Edge cases: 0.0 when ``g(0) >= alpha`` (k = 0 and
    ``u >= alpha``); 1.0 when ``g(1) < alpha`` (k = n and ``u < alpha``: an infinite Gaussian radius,
    which happens with probability alpha * P(X = n), as the exact coverage requires).
    """
    k, n = int(k), int(n)
    _check(k, n, alpha)
    if not (0.0 <= u <= 1.0):
        raise InputError(f"u must be in [0, 1], got {u!r}")
    if u >= 1.0:
        return cp_lower(k, n, alpha)

    def g(p: float) -> float:
        return float(binom.sf(k, n, p) + u * binom.pmf(k, n, p)) - alpha

    if g(0.0) >= 0.0:
        return 0.0
    if g(1.0) < 0.0:
        return 1.0
    # the root lies between Clopper-Pearson's bounds for k and k + 1 successes
    lo = cp_lower(k, n, alpha)
    hi = 1.0 if k == n else cp_lower(k + 1, n, alpha)
    if g(hi) < 0.0:
        hi = 1.0
    return float(brentq(g, lo, hi, xtol=1e-15, rtol=1e-15))


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


__all__ = ["binom_pvalue", "cp_lower", "cp_lower_randomized", "cp_upper", "min_samples_to_certify"]
