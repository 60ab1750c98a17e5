"""ZOAEDS and IRSNet: the smoothed classifier is the black box behind the fitted pre-processor, every noisy
query charged on it; IRS-Net's noise is on the normalised image (pixel radii scaled by std); access checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from scipy.stats import norm
from torch import nn

from bbdefense.certified import ZOAEDS, IRSNet
from bbdefense.certified.zo_ae_ds.train import expected_queries_per_step
from bbdefense.data.splits import Splits
from bbdefense.errors import AccessError, InputError
from bbdefense.models import BlackBox, WhiteBox

SHAPE = (1, 8, 8)
COHEN = {"n0": 10, "n": 50, "alpha": 0.01, "batch_size": 60, "seed": 2}


def test_zo_ds_queries_are_exact_and_smoothing_queries_the_black_box(digit_splits: Splits,
                                                                     digit_target: nn.Module) -> None:
    bb = BlackBox.from_module(digit_target, input_shape=SHAPE)
    est = ZOAEDS(variant="zo-ds", q=4, epochs=2, batch_size=10, depth=3, width=4, sigma=0.25)
    est.fit(bb, digit_splits.defender.subset(torch.arange(30)))
    per_step = expected_queries_per_step(est.config(), batch=10, d=64)
    assert est.queries_per_step_ == per_step == 10 + 10 * 5
    assert est.queries_ == 6 * per_step == bb.stats.queries  # 2 epochs x 3 steps
    q = bb.stats.queries
    certs = est.certify(digit_splits.test.x[:3], **COHEN)
    assert bb.stats.queries - q == 3 * 60 and len(certs) == 3
    sm = est.smoothed()
    assert sm.model is bb and sm.pre is est.pipeline_


def test_fo_variants_need_white_box_access(digit_splits: Splits, digit_target: nn.Module) -> None:
    bb = BlackBox.from_module(digit_target, input_shape=SHAPE)
    with pytest.raises(AccessError, match="fo-ds is first-order: it needs a WhiteBox"):
        ZOAEDS(variant="fo-ds", epochs=1, depth=3, width=4).fit(bb, digit_splits.defender.subset(torch.arange(10)))
    label_only = BlackBox.from_module(digit_target, input_shape=SHAPE, output="label")
    with pytest.raises(AccessError, match="needs scores"):
        ZOAEDS(variant="zo-ds", q=2, epochs=1).fit(label_only, digit_splits.defender.subset(torch.arange(10)))
    with pytest.raises(InputError, match="MNIST d_z=192 autoencoder only"):
        ZOAEDS(variant="zo-ae-ds").fit(bb, digit_splits.defender.subset(torch.arange(10)))


def test_a_loaded_denoiser_needs_a_black_box_to_smooth(digit_splits: Splits, digit_target: nn.Module,
                                                       tmp_path: Path) -> None:
    bb = BlackBox.from_module(digit_target, input_shape=SHAPE)
    est = ZOAEDS(variant="zo-ds", q=2, epochs=1, batch_size=10, depth=3, width=4)
    est.fit(bb, digit_splits.defender.subset(torch.arange(10))).save(tmp_path / "z")
    loaded = ZOAEDS.load(tmp_path / "z")
    with pytest.raises(InputError, match=r"ZOAEDS.smoothed\(\) smooths a black box and none is attached"):
        loaded.certify(digit_splits.test.x[:1])
    x = digit_splits.test.x[:2]
    a = loaded.certify(x, blackbox=bb, **COHEN)
    assert [c.to_dict() for c in a] == [c.to_dict() for c in est.certify(x, **COHEN)]


@pytest.fixture(scope="module")
def irs_pair(digit_splits: Splits, digit_target: nn.Module) -> tuple[IRSNet, IRSNet, WhiteBox]:
    sur = WhiteBox(digit_target, input_shape=SHAPE)
    data = digit_splits.defender.subset(torch.arange(64))
    kw = {"epochs": 2, "batch_size": 32, "width": 4, "lr": 1e-2, "optimizer": "adam", "sigma": 0.5}
    return IRSNet(method="irs", **kw).fit(sur, data), IRSNet(method="salman", **kw).fit(sur, data), sur


def test_irs_trains_on_the_surrogate_and_certifies_an_unseen_black_box(irs_pair, digit_splits: Splits,
                                                                        digit_other: nn.Module) -> None:
    irs, salman, sur = irs_pair
    assert irs.queries_ == 2 * 64 and salman.queries_ == 2 * (64 + 64)  # salman: labels + forwards per step
    q_sur = sur.stats.queries
    unseen = BlackBox.from_module(digit_other, input_shape=SHAPE, output="label")
    certs = irs.certify(digit_splits.test.x[:4], blackbox=unseen, **COHEN)
    assert unseen.stats.queries == 4 * 60 and sur.stats.queries == q_sur
    std = min(digit_splits.defender.std)
    assert irs.pixel_sigma_ == pytest.approx(0.5 * std) and salman.pixel_sigma_ == 0.5
    for c in certs:  # noise on the normalised image: the pixel-space l2 radius is sigma * std * Phi^-1(pA)
        want = 0.0 if c.abstain else 0.5 * std * float(norm.ppf(c.pA_lower))
        assert c.radius["l2"] == pytest.approx(want, rel=1e-5)
    for c in salman.certify(digit_splits.test.x[:4], blackbox=unseen, **COHEN):
        assert c.radius["l2"] == pytest.approx(0.0 if c.abstain else 0.5 * float(norm.ppf(c.pA_lower)), rel=1e-5)


def test_irs_noise_is_scaled_per_channel(irs_pair) -> None:
    irs, salman, _ = irs_pair
    sm, ss = irs.smoothed(), salman.smoothed()
    assert sm.scale is not None and torch.allclose(sm.scale, irs.denoiser_.std.flatten())
    assert ss.scale is None and sm.pre is irs.denoiser_
