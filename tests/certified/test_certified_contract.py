"""The estimator contract of every certified defense (and every variant): fit on a tiny setting, queries
recorded exactly, get_params round-trips, typed errors before fit, save/load gives identical certificates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from bbdefense.certified import (
    CERTIFIED,
    DUCD,
    ZOAEDS,
    CertifiedDefense,
    IRSNet,
    NotFittedError,
    load_defense,
)
from bbdefense.certify import Smooth
from bbdefense.data import ImageDataset
from bbdefense.errors import CheckpointError, InputError, UnknownNameError
from bbdefense.models import BlackBox, WhiteBox

#: (id, class, hyperparameters, setting, white-box access at fit)
SPECS: list[tuple[str, type[CertifiedDefense], dict[str, Any], str, bool]] = [
    ("ducd", DUCD, {"budget": 300, "surrogate": "smallcnn", "epochs": 2, "finetune_epochs": 1, "sigma": 0.25},
     "digits", False),
    ("ducd-laplace", DUCD, {"budget": 200, "epochs": 1, "finetune_epochs": 1, "noise": "laplace", "sigma": 0.25,
                            "query_batch": 64}, "digits", False),
    ("zo-ds", ZOAEDS, {"variant": "zo-ds", "estimator": "rge", "q": 2, "epochs": 1, "batch_size": 10, "depth": 3,
                       "width": 4, "sigma": 0.25}, "digits", False),
    ("fo-ds", ZOAEDS, {"variant": "fo-ds", "epochs": 1, "batch_size": 10, "depth": 3, "width": 4}, "digits", True),
    ("zo-ae-ds-rge", ZOAEDS, {"variant": "zo-ae-ds", "estimator": "rge", "q": 3, "epochs": 1, "batch_size": 10,
                              "depth": 3, "width": 4, "ae_epochs": 1, "ae_tries": 1}, "mnist", False),
    ("zo-ae-ds-cge", ZOAEDS, {"variant": "zo-ae-ds", "estimator": "cge", "epochs": 1, "batch_size": 10, "depth": 3,
                              "width": 4, "ae_epochs": 1, "ae_tries": 1, "chunk": None}, "mnist", False),
    ("fo-ae-ds", ZOAEDS, {"variant": "fo-ae-ds", "epochs": 1, "batch_size": 10, "depth": 3, "width": 4,
                          "ae_epochs": 1, "ae_tries": 1}, "mnist", True),
    ("irs-net", IRSNet, {"method": "irs", "epochs": 1, "batch_size": 32, "width": 4, "lr": 1e-3,
                         "optimizer": "adam"}, "digits", True),
    ("salman", IRSNet, {"method": "salman", "epochs": 1, "batch_size": 32, "width": 4, "lr": 1e-3,
                        "optimizer": "adam"}, "digits", True),
]
IDS = [s[0] for s in SPECS]
COHEN = {"n0": 8, "n": 40, "alpha": 0.01, "batch_size": 64, "seed": 5}


def _setting(request: pytest.FixtureRequest, setting: str) -> tuple[nn.Module, ImageDataset, ImageDataset]:
    """(target module, fit data, test data)."""
    if setting == "digits":
        sp = request.getfixturevalue("digit_splits")
        return request.getfixturevalue("digit_target"), sp.defender.subset(torch.arange(60)), sp.test
    data = request.getfixturevalue("mnist_slice")
    return request.getfixturevalue("mnist_target"), data, data


def _bb(module: nn.Module, data: ImageDataset, white: bool) -> BlackBox:
    shape = data.input_shape
    return WhiteBox(module, input_shape=shape) if white else BlackBox.from_module(module, input_shape=shape)


@pytest.fixture(scope="module", params=SPECS, ids=IDS)
def fitted(request: pytest.FixtureRequest) -> dict[str, Any]:
    """One fit per spec (module-scoped: several tests look at the same fitted estimator)."""
    _, cls, params, setting, white = request.param
    module, data, test = _setting(request, setting)
    bb = _bb(module, data, white)
    est = cls(**params)
    before = bb.stats.queries
    returned = est.fit(bb, data, split_seed=0)
    return {"est": est, "returned": returned, "bb": bb, "delta": bb.stats.queries - before, "test": test,
            "module": module, "cls": cls, "params": params, "white": white}


def test_fit_returns_self_and_records_the_queries_it_charged(fitted: dict[str, Any]) -> None:
    est = fitted["est"]
    assert fitted["returned"] is est and est.fitted
    assert est.queries_ == fitted["delta"] > 0
    assert est.split_seed_ == 0 and est.blackbox_ is fitted["bb"]
    if isinstance(est, DUCD):
        assert est.queries_ == est.budget  # the transfer set spends the budget exactly


def test_get_params_round_trips(fitted: dict[str, Any]) -> None:
    est, cls = fitted["est"], fitted["cls"]
    p = est.get_params()
    assert cls(**p).get_params() == p
    assert all(p[k] == v or (isinstance(v, list) and tuple(v) == p[k]) for k, v in fitted["params"].items())
    assert set(p) == set(cls._param_names())
    assert "epochs=" in repr(est) and repr(est).startswith(cls.__name__ + "(")


def test_smoothed_is_a_smooth_and_certifies(fitted: dict[str, Any]) -> None:
    est, test = fitted["est"], fitted["test"]
    sm = est.smoothed()
    assert isinstance(sm, Smooth)
    certs = est.certify(test.x[:3], **COHEN)
    assert len(certs) == 3 and all(c.n0 == 8 and c.n == 40 for c in certs)
    assert all((c.label == -1) == c.abstain for c in certs)
    pred = est.as_blackbox(n=20, alpha=0.01).query(test.x[:2])
    assert pred.shape == (2,) and pred.dtype == torch.int64


def test_save_load_gives_identical_certificates(fitted: dict[str, Any], tmp_path: Path) -> None:
    est, test, cls = fitted["est"], fitted["test"], fitted["cls"]
    path = est.save(tmp_path / "def")
    meta = json.loads(path.read_text())
    assert meta["class"] == cls.__name__ and meta["name"] == est.name and meta["format_version"] == 1
    assert meta["queries"] == est.queries_ and meta["split_seed"] == 0
    assert meta["params"] == json.loads(json.dumps(est.get_params()))
    assert all((tmp_path / "def" / f"{p}.safetensors").is_file() for p in meta["parts"])
    assert not list((tmp_path / "def").glob("*.pt")) and not list((tmp_path / "def").glob("*.pkl"))
    bb = fitted["bb"]
    loaded = cls.load(tmp_path / "def", blackbox=bb)
    assert loaded.get_params() == est.get_params() and loaded.queries_ == est.queries_
    assert loaded.split_seed_ == 0
    a, b = est.certify(test.x[:3], **COHEN), loaded.certify(test.x[:3], **COHEN)
    assert [c.to_dict() for c in a] == [c.to_dict() for c in b]
    any_cls = load_defense(tmp_path / "def", blackbox=bb)
    assert type(any_cls) is cls and CERTIFIED[est.name] is cls


def test_unfitted_use_raises_a_typed_error_naming_the_method(fitted: dict[str, Any], tmp_path: Path) -> None:
    est = fitted["cls"](**fitted["params"])
    x = fitted["test"].x[:1]
    for method, call in (("certify", lambda: est.certify(x)), ("smoothed", lambda: est.smoothed()),
                         ("as_blackbox", lambda: est.as_blackbox()), ("predict", lambda: est.predict(x)),
                         ("save", lambda: est.save(tmp_path / "x"))):
        with pytest.raises(NotFittedError, match=rf"{type(est).__name__}\.{method}\(\) needs a fitted defense"):
            call()
    assert issubclass(NotFittedError, InputError) and not (tmp_path / "x").exists()


def test_set_params_checks_and_unfits(fitted: dict[str, Any]) -> None:
    est = fitted["cls"](**fitted["params"])
    with pytest.raises(InputError, match="has no hyperparameter 'nope'"):
        est.set_params(nope=1)
    assert est.set_params(seed=7).seed == 7 and not est.fitted


def test_bad_hyperparameters_are_refused_by_name() -> None:
    with pytest.raises(InputError, match="unknown variant 'zo-xx'"):
        ZOAEDS(variant="zo-xx")
    with pytest.raises(InputError, match="unknown denoiser method 'dncnn'"):
        IRSNet(method="dncnn")
    with pytest.raises(InputError, match="zeta must be in"):
        DUCD(zeta=0.0)
    with pytest.raises(UnknownNameError, match="unknown certified defense 'rs'"):
        CERTIFIED["rs"]
    assert list(CERTIFIED) == ["ducd", "irs-net", "zo-ae-ds"]


def test_load_refuses_other_classes_and_corrupt_weights(digit_splits, digit_target, tmp_path: Path) -> None:
    bb = BlackBox.from_module(digit_target, input_shape=(1, 8, 8))
    DUCD(budget=40, epochs=1, finetune_epochs=1).fit(bb, digit_splits.defender.subset(torch.arange(40))).save(
        tmp_path / "d")
    with pytest.raises(CheckpointError, match="holds a DUCD defense, not a ZOAEDS"):
        ZOAEDS.load(tmp_path / "d")
    with pytest.raises(CheckpointError, match=r"missing defense\.json"):
        DUCD.load(tmp_path / "none")
    w = tmp_path / "d" / "base.safetensors"
    w.write_bytes(w.read_bytes()[:-4] + b"abcd")
    with pytest.raises(CheckpointError, match="do not match their recorded hash"):
        DUCD.load(tmp_path / "d")
