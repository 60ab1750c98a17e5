"""Anytime-valid sequential certification: soundness of the boundary (>= 1000 seeded repetitions per setting,
checked after every sample), end to end through Smooth on a binary linear classifier with exact pA and radius,
batch/grouping invariance, query accounting, the inverse radius."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import binom, norm

from bbdefense.certify import Smooth, make_noise
from bbdefense.certify.sequential import BetaMixture, SequentialTest, thresholds
from bbdefense.errors import InputError, QueryBudgetExceeded
from linear_helpers import binary_linear_setup

SHAPE = (1, 4, 4)
D = 16
REPS = 1500


def _tolerance(reps: int, alpha: float) -> int:
    """Most wrong decisions allowed: the 1 - 1e-6 quantile of Binomial(reps, alpha)."""
    return int(binom.ppf(1 - 1e-6, reps, alpha))


def _ever_crosses(p: float, p0: float, alpha: float, horizon: int, seed: int) -> np.ndarray:
    """Per repetition: does the robust boundary at ``p0`` cross at *any* of the first ``horizon`` samples of a
    Bernoulli(p) stream (the supremum over every stopping rule, i.e. checking after every sample)?"""
    rng = np.random.default_rng(seed)
    above, _ = thresholds(BetaMixture(), p0, alpha).upto(horizon)
    s = np.cumsum(rng.random((REPS, horizon)) < p, axis=1)
    return (s >= above[1:]).any(axis=1)


@pytest.mark.parametrize(("p0", "alpha"), [(0.5, 0.05), (0.9, 0.05), (0.977, 0.01), (0.8, 0.001)])
def test_boundary_wrong_robust_rate_at_most_alpha_under_adversarial_stopping(p0: float, alpha: float) -> None:
    # the hardest null is p = p0 (a robust claim there is wrong); p slightly below must be rarer still
    for p, seed in ((p0, 1), (p0 - 0.01, 2)):
        wrong = int(_ever_crosses(p, p0, alpha, 2000, seed).sum())
        assert wrong <= _tolerance(REPS, alpha), (p0, p, wrong)


def test_boundary_table_matches_the_e_process_and_has_power() -> None:
    mix, p0, alpha = BetaMixture(), 0.9, 0.01
    above, below = thresholds(mix, p0, alpha).upto(3000)
    rng = np.random.default_rng(0)
    for _ in range(200):
        t = int(rng.integers(1, 3001))
        s = int(rng.integers(0, t + 1))
        assert (float(mix.log_above(s, t - s, p0)) >= math.log(1 / alpha)) == (s >= above[t])
        assert (float(mix.log_below(s, t - s, p0)) >= math.log(1 / alpha)) == (s <= below[t])
    # all hits: crosses after about log(1/alpha) / log(1/p0) samples (plus the mixture's price)
    assert math.log(1 / alpha) / math.log(1 / p0) < int(np.argmax(np.arange(3001) >= above)) < 120
    assert (_ever_crosses(0.96, p0, alpha, 2000, 3)).mean() > 0.99  # power well above the threshold


def test_sequential_test_decisions_are_sound_with_its_own_requests() -> None:
    """The decision procedure (data-driven request sizes, futility stops, several radii) at p on a threshold:
    wrong robust claims <= alpha; well above it robust, well below it never robust."""
    ps = [0.5, 0.8, 0.95]
    alpha, rng = 0.05, np.random.default_rng(7)
    wrong = spent = 0
    for _ in range(1000):
        t = SequentialTest(ps, alpha, 3000)
        while not t.done:
            t.update(rng.random(t.next_request()) < 0.8)
        wrong += t.status[1] == "robust" or t.status[2] == "robust"
        spent += t.t
    assert wrong <= _tolerance(1000, alpha)
    t = SequentialTest(ps, 0.001, 5000)
    while not t.done:
        t.update(np.ones(t.next_request(), dtype=bool))
    assert t.status == ["robust"] * 3 and t.t < 300
    t = SequentialTest(ps, 0.001, 5000)
    while not t.done:
        t.update(rng.random(t.next_request()) < 0.3)
    assert "robust" not in t.status and t.t < 500


def test_unreachable_radius_costs_nothing_and_cap_is_respected() -> None:
    t = SequentialTest([0.5, 0.99999], 0.001, 1000)  # 1000 hits cannot show p > 0.99999
    assert t.status[1] == "undecided"
    t.update(np.ones(t.next_request(), dtype=bool))
    assert t.done and t.status == ["robust", "undecided"] and t.t < 30
    t = SequentialTest([0.5, 0.9], 0.001, 400, futility=None)
    rng = np.random.default_rng(0)
    while not t.done:
        t.update(rng.random(t.next_request()) < 0.9)
    assert t.t <= 400 and t.status[1] in ("undecided", "not_robust")
    with pytest.raises(InputError, match="thresholds"):
        SequentialTest([0.9, 0.5], 0.01, 10)


def test_smooth_certify_at_on_linear_classifier_exact_radius() -> None:
    """pA = Phi(m / (sigma ||w||)), exact l2 radius m / ||w||. Asking about a radius just at the truth must be
    answered "robust" at most alpha of the time; a radius well inside it is robust with few samples."""
    w = torch.randn(D, generator=torch.Generator().manual_seed(0))
    sigma, alpha, n_img = 0.5, 0.05, 300
    true_r = 0.6
    bb, x = binary_linear_setup(w, true_r * float(w.norm()), n_img, SHAPE)
    sm = Smooth(bb, make_noise("gaussian", sigma=sigma), norms=("l2",))
    assert sm.p_for_radius(true_r, "l2") == pytest.approx(norm.cdf(true_r / sigma), abs=1e-9)
    certs = sm.certify_at(x, [0.2, true_r], n0=10, max_n=3000, alpha=alpha, batch_size=512, seed=5)
    wrong = sum(c.decisions["0.6"] == "robust" for c in certs)
    assert wrong <= _tolerance(n_img, alpha)
    assert all((c.abstain or c.label == 1) and c.radius["l2"] <= true_r + 1e-12
               for c in certs if c.decisions["0.6"] != "robust")
    assert sum(c.decisions["0.2"] == "robust" for c in certs) >= 0.95 * n_img
    assert bb.stats.queries == sum(c.queries for c in certs) and all(c.n <= 3000 for c in certs)
    assert float(np.median([c.n for c in certs])) < 3000


def test_results_do_not_depend_on_batch_size_or_grouping() -> None:
    w = torch.randn(D, generator=torch.Generator().manual_seed(1))
    bb, x = binary_linear_setup(w, 0.4 * float(w.norm()), 6, SHAPE)
    x = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))  # different pA per image
    sm = Smooth(bb, make_noise("gaussian", sigma=0.5))
    kw = {"n0": 20, "max_n": 2000, "alpha": 0.01, "seed": 3}
    ref = sm.certify(x, method="sequential", radii=[0.1, 0.3, 0.5], batch_size=1000, **kw)
    small = sm.certify(x, method="sequential", radii=[0.1, 0.3, 0.5], batch_size=7, **kw)
    parts = [c for idx in ([4, 0], [1, 2, 3, 5]) for c in sm.certify(x[idx], method="sequential",
                                                                        radii=[0.1, 0.3, 0.5], batch_size=64,
                                                                        indices=idx, **kw)]
    parts = [parts[[4, 0, 1, 2, 3, 5].index(i)] for i in range(6)]
    for other in (small, parts):
        assert [(c.label, c.n, c.decisions, c.counts, c.radius) for c in other] == \
               [(c.label, c.n, c.decisions, c.counts, c.radius) for c in ref]
    assert len({c.n for c in ref}) > 1  # images stop at different times


def test_budget_and_input_errors() -> None:
    w = torch.randn(D, generator=torch.Generator().manual_seed(1))
    bb, x = binary_linear_setup(w, 1.0, 2, SHAPE)
    sm = Smooth(bb, make_noise("gaussian", sigma=0.5))
    with pytest.raises(InputError, match="method"):
        sm.certify(x, method="bayes")  # type: ignore[arg-type]  # the bad value is the point of the test
    with pytest.raises(InputError, match="radii"):
        sm.certify_at(x, -1.0)
    with pytest.raises(InputError, match="closed-form"):
        Smooth(bb, make_noise("cauchy", sigma=0.5)).certify_at(x, 0.1)
    bb.budget = 50
    with pytest.raises(QueryBudgetExceeded):
        sm.certify_at(x, 0.5, n0=10, max_n=2000)


def test_inverse_radius_round_trips() -> None:
    for name, nm in (("gaussian", "l2"), ("laplace", "l1"), ("uniform", "l1"), ("uniform", "linf")):
        noise = make_noise(name, sigma=0.5)
        for r in (0.05, 0.2):
            p = noise.p_for_radius(r, nm, D)
            assert p is not None and 0.5 < p <= 1.0
            if p < 1.0:
                got = noise.radius(p, nm, D)
                assert got is not None and r <= got[0] < r + 1e-6
    assert make_noise("gaussian").p_for_radius(0.0, "l2", D) == 0.5
    assert make_noise("uniform", sigma=0.1).p_for_radius(5.0, "l1", D) == 1.0  # beyond the family's reach
    assert make_noise("cauchy").p_for_radius(0.1, "l2", D) is None
