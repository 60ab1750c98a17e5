"""Contract invariants over the decision / white-box attacks of this part (the registry-wide
suite checks the same over every attack; this one also builds the attacks that need extra
constructor arguments: bpda and transfer)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from _attacks2_helpers import SHAPE, multiclass_model

from bbdefense.attacks import ATTACKS, Attack, lp_norm
from bbdefense.attacks.bpda import Preprocessed
from bbdefense.errors import AccessError, InputError
from bbdefense.models import BlackBox, WhiteBox

EPS = 0.05
SUR = multiclass_model(seed=1)
CONFIGS: dict[str, tuple[dict[str, Any], str]] = {
    "rays": ({"eps": EPS, "max_queries": 200}, "linf"),
    "signflip": ({"eps": EPS, "max_queries": 200}, "linf"),
    "hsja-l2": ({"norm": "l2", "eps": 0.5, "max_queries": 300}, "l2"),
    "hsja-linf": ({"norm": "linf", "eps": EPS, "max_queries": 300}, "linf"),
    "pgd": ({"eps": EPS, "steps": 5}, "linf"),
    "pgd-l1": ({"eps": 2.0, "norm": "l1", "steps": 5}, "l1"),
    "apgd": ({"eps": EPS, "steps": 5, "loss": "dlr"}, "linf"),
    "apgd-l2": ({"eps": 0.5, "norm": "l2", "steps": 5}, "l2"),
    "acg": ({"eps": EPS, "steps": 5, "restarts": 2}, "linf"),
    "bpda": ({"attack": "apgd", "attack_params": {"eps": EPS, "steps": 5}}, "linf"),
    "transfer": ({"surrogate": SUR, "attack_params": {"eps": EPS, "steps": 5}}, "linf"),
}


def _build(key: str, seed: int = 0) -> Attack:
    kw, _ = CONFIGS[key]
    return ATTACKS[key.split("-")[0]](**kw, seed=seed)


def _model(attack: Attack) -> BlackBox:
    net = multiclass_model()
    if attack.name == "bpda":
        return WhiteBox(Preprocessed(torch.nn.Identity(), net), input_shape=SHAPE)
    if attack.access == "white":
        return WhiteBox(net, input_shape=SHAPE)
    return BlackBox.from_module(net, input_shape=SHAPE, output="label")


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(6, *SHAPE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = multiclass_model()(x).argmax(1)
    return x, y


@pytest.mark.parametrize("key", list(CONFIGS))
def test_result_contract(key: str) -> None:
    attack = _build(key)
    model = _model(attack)
    x, y = _data()
    x0, y0 = x.clone(), y.clone()
    res = attack.run(model, x, y)
    eps = res.eps
    norm = CONFIGS[key][1]
    assert torch.equal(x, x0) and torch.equal(y, y0), "inputs mutated"
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype
    assert bool(((res.x_adv >= 0) & (res.x_adv <= 1)).all())
    assert eps is not None and bool((lp_norm(res.x_adv - x, norm) <= eps + 1e-5).all())
    assert torch.allclose(res.norms, lp_norm(res.x_adv - x, norm).float())
    assert int(res.queries.sum()) == model.stats.queries
    assert res.success.dtype == torch.bool and res.queries.dtype == torch.int64
    if "max_queries" in CONFIGS[key][0]:
        assert int(res.queries.max()) <= CONFIGS[key][0]["max_queries"]
    with torch.no_grad():
        pred = multiclass_model()(res.x_adv).argmax(1)
    assert torch.equal(pred[res.success] != y[res.success], torch.ones(int(res.success.sum()), dtype=torch.bool))


@pytest.mark.parametrize("key", list(CONFIGS))
def test_same_seed_same_result(key: str) -> None:
    x, y = _data()
    a = _build(key).run(_model(_build(key)), x, y)
    b = _build(key).run(_model(_build(key)), x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)


@pytest.mark.parametrize("key", list(CONFIGS))
def test_params_round_trip(key: str) -> None:
    a = _build(key)
    b = type(a)(**a.get_params())
    assert b.get_params() == a.get_params()
    assert a.get_params()["seed"] == 0


@pytest.mark.parametrize("name", ["pgd", "apgd", "acg", "bpda"])
def test_white_attacks_refuse_black_box(name: str) -> None:
    x, y = _data()
    bb = BlackBox.from_module(multiclass_model(), input_shape=SHAPE)
    with pytest.raises(AccessError, match="WhiteBox"):
        ATTACKS[name]().run(bb, x, y)


@pytest.mark.parametrize(("name", "kw", "match"), [
    ("rays", {"eps": -1.0}, r"eps must be > 0 or None, got -1.0"),
    ("hsja", {"norm": "l1"}, r"norm must be one of l2, linf, got 'l1'"),
    ("signflip", {"max_queries": 0}, r"max_queries must be an int >= 1, got 0"),
    ("signflip", {"prob": 1.5}, r"prob must be in \(0, 1\), got 1.5"),
    ("pgd", {"steps": 0}, r"steps must be an int >= 1, got 0"),
    ("apgd", {"loss": "hinge"}, r"loss must be one of ce, dlr, cw, got 'hinge'"),
    ("apgd", {"norm": "l1"}, r"norm must be one of linf, l2, got 'l1'"),
    ("bpda", {"attack": "square"}, r"attack must be 'pgd' or 'apgd', got 'square'"),
])
def test_bad_hyperparameters_raise_input_error(name: str, kw: dict[str, Any], match: str) -> None:
    x, y = _data()
    attack = ATTACKS[name](**kw)
    model = _model(attack) if name != "bpda" else WhiteBox(Preprocessed(torch.nn.Identity(), multiclass_model()),
                                                          input_shape=SHAPE)
    with pytest.raises(InputError, match=match):
        attack.run(model, x, y)


def test_budget_of_oracle_is_respected_by_decision_attacks() -> None:
    """A black box with a hard total budget is never asked for more (the attack stops or raises)."""
    x, y = _data()
    net = multiclass_model()
    bb = BlackBox.from_module(net, input_shape=SHAPE, output="label", budget=6 * 50)
    res = ATTACKS["hsja"](eps=None, max_queries=50).run(bb, x, y)
    assert bb.stats.queries <= 300 and int(res.queries.max()) <= 50


class _Noisy(torch.nn.Module):
    """A randomized model: logits plus large Gaussian noise (fresh on every call)."""

    randomized = True

    def __init__(self) -> None:
        super().__init__()
        self.net = multiclass_model()
        self.g = torch.Generator().manual_seed(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)
        return z + 3.0 * z.std() * torch.randn(z.shape, generator=self.g)


@pytest.mark.parametrize("name", ["rays", "hsja"])
def test_majority_criterion_uses_uncharged_audits_and_is_recorded(name: str) -> None:
    x, y = _data()
    single = ATTACKS[name](eps=0.05, max_queries=60).run(BlackBox.from_module(_Noisy(), input_shape=SHAPE,
                                                                              output="label"), x, y)
    bb = BlackBox.from_module(_Noisy(), input_shape=SHAPE, output="label")
    res = ATTACKS[name](eps=0.05, max_queries=60, criterion="majority", k=9).run(bb, x, y)
    assert single.criterion == "single" and res.criterion == "majority@9"
    assert bb.stats.audit_queries == res.audit_queries
    assert int(res.queries.sum()) == bb.stats.queries  # audits are not charged
    assert res.audit_queries > 0 and res.audit_queries % 9 == 0  # 9 re-queries per candidate success


def test_unknown_criterion_is_refused_before_any_query() -> None:
    x, y = _data()
    bb = BlackBox.from_module(multiclass_model(), input_shape=SHAPE, output="label")
    with pytest.raises(InputError,
                       match=r"criterion must be one of single, majority, fooled_once, fast_exp, got 'vote'"):
        ATTACKS["rays"](criterion="vote").run(bb, x, y)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"transfer: criterion must be one of single, majority, fooled_once, got"):
        ATTACKS["transfer"](surrogate=multiclass_model(), criterion="fast_exp").run(bb, x, y)  # no early stop
    assert bb.stats.queries == 0
