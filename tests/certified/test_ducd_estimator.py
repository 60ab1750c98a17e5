"""DUCD as an estimator: the surrogate learns the target, certification never queries the target,
a transfer set is reused for free, Algorithm 3's thresholds abstain, the saved surrogate is a checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from bbdefense.certified import DUCD
from bbdefense.data.splits import Splits
from bbdefense.errors import InputError
from bbdefense.models import BlackBox, load_checkpoint

COHEN = {"n0": 10, "n": 60, "alpha": 0.01, "batch_size": 100, "seed": 1}


@pytest.fixture(scope="module")
def ducd(digit_splits: Splits, digit_target: nn.Module) -> tuple[DUCD, BlackBox]:
    bb = BlackBox.from_module(digit_target, input_shape=(1, 8, 8), budget=400)
    est = DUCD(budget=400, epochs=10, lr=3e-3, finetune_epochs=2, sigma=0.1, seed=0)
    return est.fit(bb, digit_splits.defender.subset(torch.arange(200))), bb


def test_the_surrogate_learns_the_target(ducd: tuple[DUCD, BlackBox], digit_splits: Splits,
                                         digit_target: nn.Module) -> None:
    est, bb = ducd
    x = digit_splits.test.x
    with torch.no_grad():
        fid = float((est.base_(x).argmax(1) == digit_target(x).argmax(1)).float().mean())
    assert fid > 0.6, fid  # measured 0.84 on the 360 test images; chance is 0.1
    assert est.queries_ == bb.stats.queries == 400 and est.distill_["queries"] == 400


def test_certify_never_queries_the_target(ducd: tuple[DUCD, BlackBox], digit_splits: Splits) -> None:
    est, bb = ducd
    q = bb.stats.queries
    sm = est.smoothed()
    assert sm.model is not bb and sm.model.name == "ducd-surrogate"
    certs = est.certify(digit_splits.test.x[:4], **COHEN)
    est.as_blackbox(n=10).query(digit_splits.test.x[:2])
    est.predict(digit_splits.test.x[:2], n=10)
    assert bb.stats.queries == q and bb.stats.audit_queries == 0
    assert sum(c.n0 + c.n for c in certs) == 4 * 70
    # the budget is spent, yet certification works: it goes to the surrogate only
    assert bb.stats.remaining == 0


def test_transfer_set_is_reused_without_a_query(ducd: tuple[DUCD, BlackBox], digit_splits: Splits) -> None:
    est, bb = ducd
    other = DUCD(**{**est.get_params(), "noise": "laplace", "sigma": 0.2})
    q = bb.stats.queries
    other.fit(bb, digit_splits.defender.subset(torch.arange(200)), transfer=est.transfer_, surrogate=est.surrogate_)
    assert other.queries_ == 0 and bb.stats.queries == q
    assert other.transfer_size_ == est.transfer_size_ == 400 and other.distill_ == {}
    assert other.surrogate_ is est.surrogate_ and other.base_ is not est.base_
    assert other.smoothed().noise.params()["noise"] == "laplace"
    with pytest.raises(InputError, match="reused only with the transfer= it was trained on"):
        other.fit(bb, digit_splits.defender.subset(torch.arange(200)), surrogate=est.surrogate_)
    assert bb.stats.queries == q


def test_algorithm3_thresholds_only_add_abstentions(ducd: tuple[DUCD, BlackBox], digit_splits: Splits,
                                                    tmp_path: Path) -> None:
    est, _ = ducd
    strict = DUCD.load(est.save(tmp_path / "d").parent)
    strict.iota, strict.zeta = 0.9, 0.05
    x = digit_splits.test.x[:12]
    loose, tight = est.certify(x, **COHEN), strict.certify(x, **COHEN)
    assert sum(c.abstain for c in tight) > sum(c.abstain for c in loose)
    for a, b in zip(loose, tight, strict=True):
        assert b.abstain or (a.label == b.label and a.radius == b.radius)
        if not b.abstain:
            assert b.counts[b.label] / b.n > 0.9
        else:
            assert b.label == -1 and all(r == 0.0 for r in b.radius.values())


def test_saved_base_is_a_classifier_checkpoint(ducd: tuple[DUCD, BlackBox], digit_splits: Splits,
                                               tmp_path: Path) -> None:
    est, _ = ducd
    est.save(tmp_path / "d")
    module, meta = load_checkpoint(tmp_path / "d" / "base")  # so `bbdefense certify --model DIR/base` works
    assert meta["arch"] == "smallcnn" and meta["extra"]["defense"] == "ducd" and meta["input_shape"] == [1, 8, 8]
    x = digit_splits.test.x[:5]
    with torch.no_grad():
        assert torch.equal(module(x), est.base_(x))
