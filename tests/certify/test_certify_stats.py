"""Clopper-Pearson bound and PREDICT's binomial test against scipy, exactly."""

from __future__ import annotations

import pytest
from scipy.stats import beta, binomtest

from bbdefense.certify.stats import binom_pvalue, cp_lower, cp_upper, min_samples_to_certify
from bbdefense.errors import InputError


@pytest.mark.parametrize("n", [1, 2, 10, 100, 1000, 10_000, 100_000])
@pytest.mark.parametrize("alpha", [0.001, 0.01, 0.05, 0.2])
def test_cp_lower_equals_beta_ppf(n: int, alpha: float) -> None:
    for k in sorted({1, 2, n // 3, n // 2, n - 1, n} & set(range(1, n + 1))):
        assert cp_lower(k, n, alpha) == beta.ppf(alpha, k, n - k + 1)
    assert cp_lower(0, n, alpha) == 0.0


def test_cp_known_value_from_art_docs() -> None:
    # reference/art.md: proportion_confint(9990, 10000, alpha=0.002, method="beta")[0]
    assert cp_lower(9990, 10_000, 0.001) == pytest.approx(0.9975883080325683, abs=1e-15)


def test_cp_upper_mirrors_lower() -> None:
    for k, n in [(0, 10), (3, 10), (50, 100), (99, 100)]:
        assert cp_upper(k, n, 0.01) == pytest.approx(1.0 - cp_lower(n - k, n, 0.01), abs=1e-12)
    assert cp_upper(10, 10, 0.01) == 1.0


def test_binom_pvalue_equals_scipy() -> None:
    for a, b in [(60, 40), (10, 0), (500, 480), (3, 3)]:
        assert binom_pvalue(a, b) == binomtest(a, a + b, 0.5).pvalue
    assert binom_pvalue(0, 0) == 1.0


def test_min_samples_to_certify() -> None:
    for alpha in (0.001, 0.01, 0.05):
        n = min_samples_to_certify(alpha)
        assert cp_lower(n, n, alpha) > 0.5 >= cp_lower(n - 1, n - 1, alpha)


@pytest.mark.parametrize("args, word", [((5, 3, 0.01), "k must"), ((1, 0, 0.01), "n must"),
                                        ((1, 10, 0.0), "alpha"), ((1, 10, 1.5), "alpha")])
def test_cp_rejects_bad_input(args: tuple, word: str) -> None:
    with pytest.raises(InputError, match=word):
        cp_lower(*args)
