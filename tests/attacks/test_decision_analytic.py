"""Decision attacks (rays, signflip, hsja) on binary linear models with known minimal distances."""

from __future__ import annotations

import pytest
import torch
from _attacks2_helpers import SHAPE, binary_problem

from bbdefense.attacks import ATTACKS
from bbdefense.models import BlackBox

CASES = [
    ("rays", {"norm": "linf"}, "linf", 1000),
    ("signflip", {"norm": "linf"}, "linf", 1000),
    ("hsja", {"norm": "l2"}, "l2", 1000),
    ("hsja", {"norm": "linf"}, "linf", 1000),
]


@pytest.mark.parametrize(("name", "kw", "norm", "budget"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_decision_attack_within_factor_of_true_distance(name: str, kw: dict, norm: str, budget: int) -> None:
    model, x, y, l2, linf = binary_problem(n=8)
    true = l2 if norm == "l2" else linf
    bb = BlackBox.from_module(model, input_shape=SHAPE, output="label")
    res = ATTACKS[name](eps=None, max_queries=budget, **kw).run(bb, x, y)
    reached = res.extra["min_norm"]
    ratio = reached / true
    assert bool(res.success.all())
    assert float(ratio.min()) >= 1.0 - 1e-4, "an attack cannot beat the exact minimal distance"
    assert float(ratio.median()) <= 1.5 and float(ratio.max()) <= 2.0, ratio
    assert int(res.queries.max()) <= budget
    assert int(res.queries.sum()) == bb.stats.queries


@pytest.mark.parametrize(("name", "kw", "norm"), [(c[0], c[1], c[2]) for c in CASES],
                         ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_decision_attack_success_iff_eps_above_reached(name: str, kw: dict, norm: str) -> None:
    model, x, y, l2, linf = binary_problem(n=6, seed=3)
    true = l2 if norm == "l2" else linf
    eps = float(true.median()) * 1.6
    bb = BlackBox.from_module(model, input_shape=SHAPE, output="label")
    res = ATTACKS[name](eps=eps, max_queries=600, **kw).run(bb, x, y)
    below = true > eps
    assert not bool(res.success[below].any()), "success below the exact minimal distance"
    assert bool((res.norms <= eps + 1e-6).all())
    assert bool(((res.x_adv >= 0) & (res.x_adv <= 1)).all())
    with torch.no_grad():
        pred = model(res.x_adv).argmax(1)
    assert bool((pred[res.success] != y[res.success]).all())
    assert bool((res.x_adv[~res.success] == x[~res.success]).all())
    assert int(res.queries.max()) <= 600 and int(res.queries.sum()) == bb.stats.queries


def test_rays_early_stop_saves_queries() -> None:
    model, x, y, _, linf = binary_problem(n=6, seed=4)
    eps = float(linf.max()) * 3
    bb = BlackBox.from_module(model, input_shape=SHAPE, output="label")
    res = ATTACKS["rays"](eps=eps, max_queries=1000).run(bb, x, y)
    assert bool(res.success.all())
    assert int(res.queries.max()) < 1000


def test_decision_attack_clean_misclassified_costs_one_query() -> None:
    model, x, y, _, _ = binary_problem(n=4, seed=5)
    bb = BlackBox.from_module(model, input_shape=SHAPE, output="label")
    wrong = 1 - y
    for name in ("rays", "signflip", "hsja"):
        bb.reset_stats()
        res = ATTACKS[name](eps=0.1, max_queries=50).run(bb, x, wrong)
        assert bool(res.success.all()) and res.queries.tolist() == [1, 1, 1, 1]
        assert bool((res.norms == 0).all())


def test_hsja_is_batched_one_call_per_phase() -> None:
    """The whole batch shares oracle calls: far fewer calls than a per-image loop would make."""
    model, x, y, _, _ = binary_problem(n=8, seed=6)
    bb = BlackBox.from_module(model, input_shape=SHAPE, output="label")
    ATTACKS["hsja"](norm="l2", eps=None, max_queries=500, batch_size=10**6).run(bb, x, y)
    assert bb.stats.queries / bb.stats.calls > 8


@pytest.mark.parametrize("name", ["rays", "signflip", "hsja"])
def test_decision_result_does_not_depend_on_batch_size(name: str) -> None:
    model, x, y, _, _ = binary_problem(n=6, seed=8)
    out = []
    for bs in (7, 10**6):
        bb = BlackBox.from_module(model, input_shape=SHAPE, output="label")
        out.append(ATTACKS[name](eps=None, max_queries=200, batch_size=bs).run(bb, x, y))
    assert torch.equal(out[0].x_adv, out[1].x_adv) and torch.equal(out[0].queries, out[1].queries)
