"""Contract tests over the **whole** attack registry: every attack, score, decision or white-box,
must keep these invariants (one attack per parametrised case)."""

from __future__ import annotations

import contextlib

import pytest
import torch
from attack_helpers import build, images, linear10, model_for

from bbdefense.attacks import ATTACKS, lp_norm
from bbdefense.errors import AccessError
from bbdefense.models import BlackBox

NAMES = sorted(ATTACKS)


def _setup(name: str, n: int = 6):
    attack = build(name)
    module = linear10()
    model = model_for(attack, module)
    x = images(n)
    with torch.no_grad():
        y = module(x).argmax(1)
    return attack, model, x, y


@pytest.mark.parametrize("name", NAMES)
def test_attack_result_in_bounds_and_ball(name: str) -> None:
    attack, model, x, y = _setup(name)
    res = attack.run(model, x, y)
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype
    assert float(res.x_adv.min()) >= 0.0 and float(res.x_adv.max()) <= 1.0
    assert res.success.shape == (len(x),) and res.success.dtype == torch.bool
    assert res.queries.shape == (len(x),) and res.queries.dtype == torch.int64
    if res.eps is not None:
        assert float(lp_norm(res.x_adv - x, res.norm).max()) <= res.eps * (1 + 1e-5) + 1e-6
    assert torch.allclose(res.norms, lp_norm(res.x_adv - x, res.norm), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_attack_does_not_mutate_inputs(name: str) -> None:
    attack, model, x, y = _setup(name)
    x0, y0 = x.clone(), y.clone()
    target = (y + 1) % 10
    t0 = target.clone()
    attack.run(model, x, y)
    with contextlib.suppress(Exception):  # an untargeted-only attack may refuse a target; it must still not mutate
        attack.run(model, x, y, target=target)
    assert torch.equal(x, x0) and torch.equal(y, y0) and torch.equal(target, t0)


@pytest.mark.parametrize("name", NAMES)
def test_attack_queries_sum_to_oracle_counter(name: str) -> None:
    attack, model, x, y = _setup(name)
    before = model.stats.queries
    res = attack.run(model, x, y)
    assert int(res.queries.sum()) == model.stats.queries - before
    assert res.audit_queries >= 0


@pytest.mark.parametrize("name", NAMES)
def test_attack_respects_per_image_budget(name: str) -> None:
    attack, model, x, y = _setup(name)
    params = attack.get_params()
    if "max_queries" not in params:
        pytest.skip(f"{name} has no max_queries budget")
    res = attack.run(model, x, y)
    assert int(res.queries.max()) <= params["max_queries"]


@pytest.mark.parametrize("name", NAMES)
def test_attack_same_seed_same_result(name: str) -> None:
    attack, model, x, y = _setup(name)
    a = attack.run(model, x, y)
    b = type(attack)(**attack.get_params()).run(model, x, y)
    assert torch.equal(a.x_adv, b.x_adv)
    assert torch.equal(a.queries, b.queries) and torch.equal(a.success, b.success)


@pytest.mark.parametrize("name", NAMES)
def test_attack_params_round_trip(name: str) -> None:
    attack = build(name)
    again = type(attack)(**attack.get_params())
    assert again.get_params() == attack.get_params()
    assert repr(again) == repr(attack)


@pytest.mark.parametrize("name", [n for n in NAMES if ATTACKS[n].access == "scores"])
def test_score_attack_refuses_label_only_model(name: str) -> None:
    attack = build(name)
    model = BlackBox.from_module(linear10(), input_shape=(1, 8, 8), output="label")
    x = images(2)
    with pytest.raises(AccessError, match="needs logits or probabilities; the model reveals only label"):
        attack.run(model, x, torch.zeros(2, dtype=torch.long))
    assert model.stats.queries == 0


@pytest.mark.parametrize("name", NAMES)
def test_attack_success_agrees_with_fresh_evaluation(name: str) -> None:
    attack, model, x, y = _setup(name)
    res = attack.run(model, x, y)
    with torch.no_grad():
        pred = linear10()(res.x_adv).argmax(1)
    # ties are measure-zero on a linear model: success <=> misclassified
    assert torch.equal(res.success, pred.ne(y))


@pytest.mark.parametrize("name", NAMES)
def test_attack_on_an_empty_batch_returns_an_empty_result_without_a_query(name: str) -> None:
    attack, model, x, y = _setup(name)
    before = model.stats.queries
    res = attack.run(model, x[:0], y[:0])
    assert res.x_adv.shape == (0, *x.shape[1:]) and res.success.shape == (0,) and res.queries.shape == (0,)
    assert model.stats.queries == before and res.attack == attack.name
