"""Image-reconstruction variant (§5.3): oracle, regression stability loss with exact queries, PGD, metrics."""
from __future__ import annotations

import pytest
import torch

from bbdefense.certified.zo_ae_ds.reconstruction import (
    MeasuredReconstructor,
    as_blackbox,
    pgd_l2_recon,
    rmse_ssim,
    table5_rows,
)
from bbdefense.certified.zo_ae_ds.train import ZOAEDSConfig, expected_queries_per_step, train_zo_ae_ds
from bbdefense.data import ImageDataset
from bbdefense.errors import AccessError, InputError
from bbdefense.models import BlackBox


def _data(n: int = 8) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    return ImageDataset("tiny", torch.rand(n, 1, 28, 28, generator=g), torch.zeros(n, dtype=torch.long),
                        [str(i) for i in range(10)], (0.5,), (0.5,))


def test_oracle_and_measurement() -> None:
    net = MeasuredReconstructor(m=100, depth=3, width=4, seed=1)
    assert net.A.shape == (100, 784)
    assert torch.equal(net.A, MeasuredReconstructor(m=100, depth=3, width=4, seed=1).A)
    bb = as_blackbox(net)
    out = bb.query(_data(3).x)
    assert out.shape == (3, 784) and bb.stats.queries == 3
    with pytest.raises(InputError, match=r"m must be in \[1, 784\], got 0"):
        MeasuredReconstructor(m=0)


def test_regression_stability_training_counts_queries() -> None:
    net = MeasuredReconstructor(m=64, depth=3, width=4)
    bb = as_blackbox(net)
    cfg = ZOAEDSConfig(variant="zo-ds", task="reconstruction", q=2, epochs=1, batch_size=4, depth=3, width=4)
    res = train_zo_ae_ds(bb, _data(8), cfg)
    assert res.queries == bb.stats.queries == 2 * expected_queries_per_step(cfg, batch=4, d=784)
    fo = ZOAEDSConfig(variant="fo-ds", task="reconstruction", epochs=1, batch_size=4, depth=3, width=4)
    wb = as_blackbox(net, white=True)
    assert train_zo_ae_ds(wb, _data(8), fo).queries == 16
    with pytest.raises(AccessError, match="raw outputs"):
        bb = BlackBox.from_module(net, num_classes=784, input_shape=(1, 28, 28), output="probs")
        train_zo_ae_ds(bb, _data(8), cfg)


def test_pgd_stays_in_ball_and_hurts() -> None:
    net = MeasuredReconstructor(m=200, depth=3, width=4)
    x = _data(4).x
    xa = pgd_l2_recon(net, x, eps=1.0, steps=10)
    assert float((xa - x).flatten(1).norm(dim=1).max()) <= 1.0 + 1e-4
    assert float(xa.min()) >= 0 and float(xa.max()) <= 1
    with torch.no_grad():
        assert rmse_ssim(net(xa), x)[0] > rmse_ssim(net(x), x)[0]
    rows = table5_rows(net, None, x, sigma=0.1, eps_list=(0.0, 1.0), steps=5)
    assert [r[0] for r in rows] == [0.0, 1.0] and rows[1][1] > rows[0][1]


def test_metrics_known_values() -> None:
    x = _data(2).x
    assert rmse_ssim(x.flatten(1), x) == pytest.approx((0.0, 1.0))
    assert rmse_ssim((x + 0.1).flatten(1), x)[0] == pytest.approx(0.1, abs=1e-5)
