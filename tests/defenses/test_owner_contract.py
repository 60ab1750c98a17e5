"""Contract tests over every registered owner-side defense: a defense is a model usable through a
BlackBox, seeds reproduce, non-randomized defenses are deterministic, query stats nest."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bbdefense.defenses import DEFENSES, Defense, RandomNoiseDefense
from bbdefense.errors import InputError, UnknownNameError
from bbdefense.models import BlackBox
from bbdefense.models.zoo import build_model

SHAPE = (1, 8, 8)


def _model() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_model("smallcnn", num_classes=10, in_channels=1, image_size=8).eval()


def _ref() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return torch.rand(12, *SHAPE, generator=g), torch.arange(12) % 10


def _config(name: str) -> dict:
    if name == "mixup_inference":
        return {"reference": _ref(), "n_samples": 4}
    if name == "aaa":
        return {"num_iter": 10}
    if name == "rfd":
        return {"layers": ["stage1"], "nu": 0.3}
    return {}


# inner forwards per image for a batch of N (combine mode and ensembles forward more)
EXPECTED_INNER = {"rfd": 1, "rnd": 1, "snd": 1, "aaa": 1, "unig": 1, "anti_adversary": 4, "mixup_inference": 5}

NAMES = sorted(DEFENSES)


def _x(n: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def test_registry_lists_the_issue_defenses() -> None:
    assert {"rfd", "unig", "rnd", "snd", "aaa", "anti_adversary", "mixup_inference"} <= set(DEFENSES)
    with pytest.raises(UnknownNameError, match=r"unknown defense 'nope'.*rfd"):
        DEFENSES["nope"]


@pytest.mark.parametrize("name", NAMES)
def test_defense_is_a_model_behind_a_blackbox(name: str) -> None:
    d = DEFENSES[name](_model(), **_config(name))
    assert isinstance(d, nn.Module) and isinstance(d, Defense)
    bb = BlackBox.from_module(d, num_classes=10, input_shape=SHAPE)
    out = bb(_x())
    assert out.shape == (6, 10) and torch.isfinite(out).all()
    assert bb.randomized == type(d).randomized
    assert bb.stats.queries == 6 == d.stats.queries
    assert d.stats.inner_queries == 6 * EXPECTED_INNER[name]
    assert "randomized" in d.describe() and d.describe()["defense"] == name


@pytest.mark.parametrize("name", NAMES)
def test_seeds_reproduce_over_a_query_sequence(name: str) -> None:
    outs = []
    for _ in range(2):
        d = DEFENSES[name](_model(), seed=3, **_config(name))
        outs.append([d(_x(5, s)) for s in (1, 2, 1)])
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", [n for n in NAMES if DEFENSES[n].randomized])
def test_randomized_defense_varies_and_seed_matters(name: str) -> None:
    x = _x(5)
    d = DEFENSES[name](_model(), seed=3, **_config(name))
    assert not torch.equal(d(x), d(x))  # fresh randomness per query
    e = DEFENSES[name](_model(), seed=4, **_config(name))
    d.reseed(3)
    assert not torch.equal(d(x), e(x))


@pytest.mark.parametrize("name", [n for n in NAMES if not DEFENSES[n].randomized])
def test_non_randomized_defense_is_deterministic(name: str) -> None:
    x = _x(5)
    d = DEFENSES[name](_model(), **_config(name))
    torch.testing.assert_close(d(x), d(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_stats_nest_inside_an_outer_defense(name: str) -> None:
    inner = DEFENSES[name](_model(), **_config(name))
    outer = RandomNoiseDefense(inner, nu=0.01)
    bb = BlackBox.from_module(outer, num_classes=10, input_shape=SHAPE)
    bb(_x(7))
    bb(_x(3))
    assert bb.stats.queries == outer.stats.queries == 10
    assert outer.stats.inner_queries == inner.stats.queries == 10
    assert inner.stats.inner_queries == 10 * EXPECTED_INNER[name]
    assert outer.stats.calls == inner.stats.calls == 2


@pytest.mark.parametrize("name", NAMES)
def test_params_round_trip(name: str) -> None:
    d = DEFENSES[name](_model(), **_config(name))
    params = d.get_params()
    assert "seed" in params
    if name in ("mixup_inference",):
        params["reference"] = _ref()
    e = type(d)(_model(), **params)
    assert e.get_params().keys() == d.get_params().keys()


def test_bad_inputs_raise_typed_errors() -> None:
    m = _model()
    with pytest.raises(InputError, match="nu must be >= 0, got -1"):
        DEFENSES["rnd"](m, nu=-1)
    with pytest.raises(InputError, match=r"expected the owner's torch\.nn\.Module, got str"):
        DEFENSES["rnd"]("model")
    with pytest.raises(InputError, match="needs reference"):
        DEFENSES["mixup_inference"](m)
    with pytest.raises(InputError, match="unknown layer 'layer9'"):
        DEFENSES["rfd"](m, layers=["layer9"])
    with pytest.raises(InputError, match=r"expected images of shape \(N, C, H, W\), got \(8, 8\)"):
        DEFENSES["rnd"](m)(torch.rand(8, 8))
    with pytest.raises(InputError, match="unig needs a classifier exposing embed"):
        DEFENSES["unig"](nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))


@pytest.mark.parametrize("name", NAMES)
def test_restart_answers_as_just_deployed(name: str) -> None:
    """After any traffic, ``restart(seed)`` gives the answers of a fresh defense built with that seed: every
    query-to-query state is cleared by ``reset_state`` (the evaluation restarts a defense before each attack
    run, so a run does not depend on the ones before it)."""
    fresh = DEFENSES[name](_model(), **_config(name))
    fresh.restart(0)
    want = fresh(_x())
    used = DEFENSES[name](_model(), **_config(name))
    for s in range(3):
        used(_x(6, seed=10 + s))
    used.restart(0)
    assert torch.equal(used(_x()), want)
