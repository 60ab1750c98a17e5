"""Smooth: Cohen CERTIFY/PREDICT on linear binary classifiers with known pA and true radius."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import binom, binomtest, norm

from bbdefense.certify import Smooth, make_noise
from bbdefense.certify.stats import cp_lower
from bbdefense.errors import InputError, QueryBudgetExceeded
from bbdefense.models import BlackBox
from linear_helpers import binary_linear_setup

SHAPE = (1, 4, 4)
D = 16


def _setup(w: torch.Tensor, margin: float, n_img: int) -> tuple[BlackBox, torch.Tensor]:
    return binary_linear_setup(w, margin, n_img, SHAPE)


def test_gaussian_soundness_and_pa_estimate() -> None:
    """pA = Phi(m / (sigma ||w||)); true l2 radius m / ||w||. The certified radius may exceed it only when
    the CP bound overshoots pA, whose exact probability we compute; its frequency must match it and <= alpha."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(D, generator=g)
    sigma, alpha, n0, n, trials = 0.5, 0.05, 20, 200, 600
    true_r = 0.42
    margin = true_r * float(w.norm())
    p_a = norm.cdf(true_r / sigma)
    bb, x = _setup(w, margin, trials)
    certs = Smooth(bb, make_noise("gaussian", sigma=sigma), norms=("l2",)).certify(
        x, n0=n0, n=n, alpha=alpha, batch_size=500, seed=11)
    n_a = torch.tensor([c.counts[1] for c in certs]).double()
    # the counts are Binomial(n, pA): their mean is within 5 standard errors of n pA
    assert abs(n_a.mean().item() - n * p_a) < 5 * math.sqrt(n * p_a * (1 - p_a) / trials)
    # two-sided 99% CP interval from each estimate covers pA in about 99% of trials
    covered = sum(cp_lower(int(k), n, 0.005) <= p_a <= 1 - cp_lower(n - int(k), n, 0.005) for k in n_a)
    assert covered / trials > 0.97
    # soundness: radius > true radius exactly when pA_lower > pA (or a wrong class were certified)
    viol = sum((not c.abstain) and (c.label != 1 or c.radius["l2"] > true_r) for c in certs)
    k_star = min(k for k in range(n + 1) if cp_lower(k, n, alpha) > p_a)
    p_exact = binom.sf(k_star - 1, n, p_a)  # P(CP lower bound > pA): <= alpha by construction
    assert p_exact <= alpha
    assert binomtest(viol, trials, p_exact).pvalue > 1e-3, (viol, trials, p_exact)
    assert viol <= binom.ppf(0.999, trials, alpha)


def test_laplace_l1_soundness_is_tight_on_one_hot_classifier() -> None:
    """w = e_1: pA = 1 - exp(-m/b)/2 and the true l1 radius is m, equal to Teng's bound at the true pA."""
    w = torch.zeros(D)
    w[3] = 1.0
    sigma, alpha, n, trials, m = 0.4, 0.05, 200, 400, 0.3
    b = sigma / math.sqrt(2)
    p_a = 1 - 0.5 * math.exp(-m / b)
    nz = make_noise("laplace", sigma=sigma)
    assert nz.radius(p_a, "l1", D)[0] == pytest.approx(m)
    bb, x = _setup(w, m, trials)
    certs = Smooth(bb, nz, norms=("l1",)).certify(x, n0=20, n=n, alpha=alpha, seed=5)
    viol = sum((not c.abstain) and (c.label != 1 or c.radius["l1"] > m + 1e-12) for c in certs)
    assert viol <= binom.ppf(0.999, trials, alpha)
    assert sum(not c.abstain for c in certs) > 0.9 * trials


def test_batch_size_and_grouping_invariance() -> None:
    w = torch.randn(D, generator=torch.Generator().manual_seed(1))
    bb, x = _setup(w, 0.3, 5)
    sm = Smooth(bb, make_noise("gen_gaussian", sigma=0.3, beta=1.5))
    a = sm.certify(x, n0=30, n=150, alpha=0.01, batch_size=13, seed=3)
    b = sm.certify(x, n0=30, n=150, alpha=0.01, batch_size=1000, seed=3)
    c = sm.certify(x[2:4], n0=30, n=150, alpha=0.01, batch_size=64, seed=3, indices=[2, 3])
    assert [z.counts for z in a] == [z.counts for z in b]
    assert [z.counts0 for z in a] == [z.counts0 for z in b]
    assert [z.counts for z in a[2:4]] == [z.counts for z in c]
    assert a[0].counts != a[1].counts  # images get different noise
    d = sm.certify(x, n0=30, n=150, alpha=0.01, batch_size=13, seed=4)
    assert [z.counts for z in a] != [z.counts for z in d]


def test_query_accounting_and_budget() -> None:
    w = torch.randn(D, generator=torch.Generator().manual_seed(2))
    bb, x = _setup(w, 0.5, 3)
    sm = Smooth(bb, make_noise("gaussian", sigma=0.25))
    sm.certify(x, n0=10, n=90, batch_size=32)
    assert bb.stats.queries == 3 * (10 + 90)
    bb.reset_stats()
    sm.predict(x, n=50, batch_size=16)
    assert bb.stats.queries == 3 * 50
    small = BlackBox.from_module(bb.backend.module, num_classes=2, input_shape=SHAPE, budget=100)
    with pytest.raises(QueryBudgetExceeded):
        Smooth(small, make_noise("gaussian", sigma=0.25)).certify(x, n0=10, n=90)


def test_certificate_contents_and_abstain() -> None:
    w = torch.randn(D, generator=torch.Generator().manual_seed(3))
    bb, x = _setup(w, 0.0, 2)  # on the boundary: pA = 1/2 -> abstain
    sm = Smooth(bb, make_noise("gaussian", sigma=0.5))
    c = sm.certify(x, n0=20, n=400, alpha=0.001)[0]
    assert c.abstain and c.label == -1 and c.radius == {"l1": 0.0, "l2": 0.0, "linf": 0.0}
    assert sum(c.counts) == 400 and sum(c.counts0) == 20 and not c.approximate
    assert (sm.predict(x, n=400, alpha=0.001) == -1).all()
    bb2, x2 = _setup(w, 3.0 * float(w.norm()), 2)  # far from the boundary
    c2 = Smooth(bb2, make_noise("gaussian", sigma=0.5)).certify(x2, n0=20, n=400, alpha=0.001)[0]
    assert c2.label == 1 and not c2.abstain
    assert c2.pA_lower == cp_lower(400, 400, 0.001)
    assert c2.radius["l2"] == pytest.approx(0.5 * norm.ppf(c2.pA_lower))
    assert c2.radius["linf"] == pytest.approx(c2.radius["l2"] / 4) and c2.radius_method["linf"] == "from_l2"
    assert (Smooth(bb2, make_noise("gaussian", sigma=0.5)).predict(x2, n=400) == 1).all()


def test_clip_keeps_queries_in_range_and_unclipped_goes_outside() -> None:
    seen = {"lo": 1.0, "hi": 0.0}

    def fn(z: torch.Tensor) -> torch.Tensor:
        seen["lo"], seen["hi"] = min(seen["lo"], float(z.min())), max(seen["hi"], float(z.max()))
        return torch.zeros(z.shape[0], dtype=torch.int64)

    bb = BlackBox.from_callable(fn, returns="label", num_classes=3, input_shape=SHAPE, output="label")
    x = torch.full((2, *SHAPE), 0.5)
    Smooth(bb, make_noise("gaussian", sigma=0.5), clip=True).certify(x, n0=10, n=50)
    assert seen["lo"] >= 0.0 and seen["hi"] <= 1.0
    c = Smooth(bb, make_noise("gaussian", sigma=0.5)).certify(x, n0=10, n=50)
    assert seen["lo"] < 0.0 and seen["hi"] > 1.0 and c[0].label == 0


def test_smoothed_classifier_as_blackbox() -> None:
    w = torch.randn(D, generator=torch.Generator().manual_seed(4))
    bb, x = _setup(w, 3.0 * float(w.norm()), 3)
    sbb = Smooth(bb, make_noise("gaussian", sigma=0.25)).as_blackbox(n=64, alpha=0.01)
    assert sbb.output == "label" and sbb.randomized and sbb.num_classes == 2
    assert sbb(x).tolist() == [1, 1, 1]
    assert sbb.stats.queries == 3 and bb.stats.queries == 3 * 64
    bb0, x0 = _setup(w, 0.0, 2)
    assert (Smooth(bb0, make_noise("gaussian", sigma=0.5)).as_blackbox(n=64)(x0) == -1).all()


def test_numerical_fallback_marks_certificates_approximate() -> None:
    w = torch.randn(D, generator=torch.Generator().manual_seed(5))
    bb, x = _setup(w, 2.0 * float(w.norm()), 2)
    sm = Smooth(bb, make_noise("cauchy", sigma=0.5), norms=("l2",),
                numerical={"n_mc": 300, "particles": 2, "pso_iters": 1})
    cs = sm.certify(x, n0=10, n=100, alpha=0.01)
    assert all(c.approximate and c.radius_method["l2"] == "numerical" and c.radius["l2"] > 0 for c in cs)
    assert math.isnan(Smooth(bb, make_noise("cauchy", sigma=0.5), radius_method="closed")
                      .certify(x[:1], n0=10, n=100, alpha=0.01)[0].radius["l2"])


def test_input_errors() -> None:
    w = torch.randn(D)
    bb, x = _setup(w, 0.1, 1)
    sm = Smooth(bb, make_noise("gaussian", sigma=0.25))
    with pytest.raises(InputError, match="n must"):
        sm.certify(x, n=0)
    with pytest.raises(InputError, match="alpha"):
        sm.certify(x, alpha=1.5)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        sm.certify(x + 2.0)
    with pytest.raises(InputError, match="norm"):
        Smooth(bb, make_noise("gaussian"), norms=("l5",))
    with pytest.raises(InputError, match="Noise"):
        Smooth(bb, "gaussian")  # type: ignore[arg-type]
