"""ZO-AE-DS training: exact query accounting, frozen decoder, Eq. 8 gradient, access checks, certification."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bbdefense.certified.zo.estimators import cge, surrogate_loss
from bbdefense.certified.zo_ae_ds.train import (
    DenoisedPipeline,
    ZOAEDSConfig,
    autoencoder_192,
    denoiser_net,
    expected_queries_per_step,
    train_zo_ae_ds,
)
from bbdefense.certify import Smooth, make_noise
from bbdefense.certify.metrics import curve_from_certificates
from bbdefense.data import ImageDataset
from bbdefense.errors import AccessError, InputError
from bbdefense.models import BlackBox, WhiteBox

SHAPE = (1, 28, 28)


def _clf(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def _data(n: int = 10) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    return ImageDataset("tiny", torch.rand(n, *SHAPE, generator=g), torch.arange(n) % 10, [str(i) for i in range(10)],
                        (0.5,), (0.5,))


def _ae() -> nn.Module:
    torch.manual_seed(3)
    return autoencoder_192()


@pytest.mark.parametrize("kw", [
    {"variant": "zo-ae-ds", "zo_method": "rge", "q": 3},
    {"variant": "zo-ae-ds", "zo_method": "cge", "difference": "forward"},
    {"variant": "zo-ae-ds", "zo_method": "cge", "difference": "central"},
    {"variant": "zo-ds", "zo_method": "rge", "q": 2},
    {"variant": "fo-ae-ds"}, {"variant": "fo-ds"},
])
def test_every_query_counted_exactly(kw: dict) -> None:
    cfg = ZOAEDSConfig(**kw, epochs=1, batch_size=5, depth=3, width=4, chunk=None)
    clf = _clf()
    bb = (WhiteBox(clf, input_shape=SHAPE) if cfg.variant.startswith("fo")
          else BlackBox.from_module(clf, input_shape=SHAPE))
    res = train_zo_ae_ds(bb, _data(10), cfg, ae=_ae())
    d = 192 if cfg.variant.endswith("ae-ds") else 784
    per_step = expected_queries_per_step(cfg, batch=5, d=d)
    assert res.queries == bb.stats.queries == 2 * per_step
    assert res.queries_per_step == per_step
    if cfg.variant == "zo-ae-ds" and cfg.zo_method == "cge":
        assert per_step == 5 + 5 * (193 if cfg.difference == "forward" else 384)


def test_decoder_frozen_encoder_and_denoiser_trained() -> None:
    ae = _ae()
    dec0, enc0 = copy.deepcopy(ae.decoder.state_dict()), copy.deepcopy(ae.encoder.state_dict())
    bb = BlackBox.from_module(_clf(), input_shape=SHAPE)
    res = train_zo_ae_ds(bb, _data(10), ZOAEDSConfig(q=4, epochs=1, batch_size=5, depth=3, width=4), ae=ae)
    for k, v in res.pipeline.ae.decoder.state_dict().items():
        assert torch.equal(v, dec0[k]), k
    assert any(not torch.equal(v, enc0[k]) for k, v in res.pipeline.ae.encoder.state_dict().items())
    assert not res.pipeline.training


def test_eq8_surrogate_gives_first_order_gradient() -> None:
    """Backprop of mean_b <z_b, CGE(z_b)> into the encoder equals the true gradient up to O(mu^2)."""
    torch.manual_seed(0)
    clf, ae, x = _clf(), _ae(), _data(4).x
    y0 = clf(x).argmax(1)
    enc = ae.encoder.double()
    dec, clf = ae.decoder.double(), clf.double()
    z = enc(x.double())
    F.cross_entropy(clf(dec(z)), y0).backward()
    true = [p.grad.clone() for p in enc.parameters()]
    enc.zero_grad()
    z = enc(x.double())

    def loss_fn(pts: torch.Tensor) -> torch.Tensor:
        b, p, d = pts.shape
        out = clf(dec(pts.reshape(b * p, d)))
        return F.cross_entropy(out, y0.repeat_interleave(p), reduction="none").view(b, p)

    est = cge(loss_fn, z.detach(), mu=1e-4, difference="central")
    surrogate_loss(z, est.grad).backward()
    for t, p in zip(true, enc.parameters(), strict=True):
        assert torch.allclose(p.grad, t, atol=1e-6, rtol=1e-4)


def test_access_requirements() -> None:
    clf = _clf()
    label_bb = BlackBox.from_module(clf, input_shape=SHAPE, output="label")
    with pytest.raises(AccessError, match=r"needs scores.*'label'"):
        train_zo_ae_ds(label_bb, _data(), ZOAEDSConfig(epochs=1), ae=_ae())
    with pytest.raises(AccessError, match="needs a WhiteBox, got BlackBox"):
        train_zo_ae_ds(BlackBox.from_module(clf, input_shape=SHAPE), _data(), ZOAEDSConfig(variant="fo-ds", epochs=1))
    with pytest.raises(InputError, match="needs a pre-trained autoencoder"):
        train_zo_ae_ds(BlackBox.from_module(clf, input_shape=SHAPE), _data(), ZOAEDSConfig(epochs=1))
    with pytest.raises(InputError, match="unknown variant 'zo-xx'"):
        ZOAEDSConfig(variant="zo-xx").check()  # type: ignore[arg-type]
    with pytest.raises(InputError, match="zo-ds uses RGE only"):
        ZOAEDSConfig(variant="zo-ds", zo_method="cge").check()


def test_probs_output_works_and_dncnn_starts_as_identity() -> None:
    x = _data(4).x
    assert torch.equal(denoiser_net(1, 4, 8)(x), x)
    bb = BlackBox.from_module(_clf(), input_shape=SHAPE, output="probs")
    res = train_zo_ae_ds(bb, _data(10), ZOAEDSConfig(q=2, epochs=1, batch_size=10, depth=3, width=4), ae=_ae())
    assert math.isfinite(res.history[0]["stab_loss"])
    out = DenoisedPipeline(denoiser_net(1, 3, 4), _ae())(x)
    assert out.shape == x.shape and float(out.detach().min()) >= 0 and float(out.detach().max()) <= 1


def test_smooth_certifies_a_constant_classifier_with_the_known_radius() -> None:
    """The denoised defenses certify through Smooth: a constant classifier has counts all on one class,
    pA_lower = alpha^(1/n), radius sigma Phi^-1(pA_lower) (times min(scale) with a per-channel scale)."""
    from scipy.stats import norm
    const = BlackBox.from_callable(lambda x: torch.full((x.shape[0],), 3), returns="label", output="label",
                                   num_classes=10, input_shape=SHAPE)
    x = torch.full((2, *SHAPE), 0.5)
    certs = Smooth(const, make_noise("gaussian", sigma=0.5), norms=("l2",), clip=True).certify(
        x, n0=10, n=200, alpha=0.01, batch_size=64)
    pa = 0.01 ** (1 / 200)
    for c in certs:
        assert c.label == 3 and c.counts[3] == 200 and c.n0 + c.n == 210
        assert abs(c.radius["l2"] - 0.5 * norm.ppf(pa)) < 1e-9
    assert const.stats.queries == 420
    assert curve_from_certificates(certs, [3, 4], "l2", (0.0, 0.9, 1.1)).tolist() == [0.5, 0.5, 0.0]
    scaled = Smooth(const, make_noise("gaussian", sigma=0.5), norms=("l2",), scale=[0.3]).certify(
        x[:1], n0=10, n=200, alpha=0.01)
    assert abs(scaled[0].radius["l2"] - 0.15 * norm.ppf(pa)) < 1e-6  # float32 scale


def test_smooth_abstains_on_a_coin() -> None:
    coin = BlackBox.from_module(nn.Sequential(nn.Flatten(), nn.Linear(784, 2)), input_shape=SHAPE)
    with torch.no_grad():
        coin.backend.module[1].weight.zero_()
        coin.backend.module[1].weight[0, 0] = 1.0  # label decided by the sign of one noisy pixel - 0.5
        coin.backend.module[1].bias.zero_()
        coin.backend.module[1].bias[0] = -0.5
    x = torch.full((1, *SHAPE), 0.5)
    c = Smooth(coin, make_noise("gaussian", sigma=1.0), norms=("l2",)).certify(x, n0=20, n=400, alpha=0.001, seed=1)[0]
    assert c.abstain and c.label == -1 and c.radius["l2"] == 0.0
    assert curve_from_certificates([c], [0], "l2", (0.0,)).tolist() == [0.0]  # abstentions are wrong
