"""IRS-Net: noise on the normalised image, the rescaled loss, surrogate-only training, certification scale."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bbdefense.certified.irs.bpda import NoisyPipeline, bpda_pgd_accuracy
from bbdefense.certified.irs.irs_net import (
    IRSConfig,
    IRSDenoiser,
    irs_unet,
    pixel_sigma,
    rescaled_loss,
    stability_mse_loss,
    train_denoiser,
)
from bbdefense.data import ImageDataset
from bbdefense.errors import InputError
from bbdefense.models import WhiteBox

SHAPE = (1, 28, 28)


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _data(n: int = 12) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    return ImageDataset("tiny", torch.rand(n, *SHAPE, generator=g), torch.arange(n) % 10,
                        [str(i) for i in range(10)], (0.3,), (0.4,))


def test_noise_on_normalised_image_is_scaled_pixel_noise() -> None:
    """U(norm(x) + sigma*delta) == IRSDenoiser(x + sigma*std*delta): what certification relies on."""
    den = IRSDenoiser(Identity(), method="irs", mean=(0.3,), std=(0.4,))
    x = _data(3).x
    delta = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    a = den.unet(den.normalize(x) + 0.5 * delta)
    b = den(x + 0.5 * den.noise_scale.view(1, -1, 1, 1) * delta)
    assert torch.allclose(a, b, atol=1e-6)
    assert pixel_sigma(den, 0.5) == pytest.approx(0.2)
    sal = IRSDenoiser(Identity(), method="salman", mean=(0.3,), std=(0.4,))
    assert torch.equal(sal(x), x) and pixel_sigma(sal, 0.5) == 0.5


def test_rescaled_loss_values() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 0])
    x, xh = torch.zeros(2, 1, 2, 2), torch.full((2, 1, 2, 2), 0.25)
    ce = torch.nn.functional.cross_entropy(logits, y)
    assert float(rescaled_loss(logits, y, x, xh, 0.1)) == pytest.approx(0.1 * float(ce) + 0.25)
    assert float(stability_mse_loss(logits, y, x, xh)) == pytest.approx(float(ce) + 0.0625)


def test_unet_shapes_and_range() -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        out = irs_unet(1, 4)(torch.randn(2, *SHAPE, generator=g))
        odd = irs_unet(1, 4)(torch.randn(1, 1, 30, 30))  # the zoo UNet pads odd pooled sizes
    assert out.shape == (2, *SHAPE) and float(out.min()) >= 0 and float(out.max()) <= 1
    assert odd.shape == (1, 1, 30, 30)
    with pytest.raises(InputError, match=r"needs \(N, C, H, W\) with H, W >= 4, got shape \(1, 1, 3, 3\)"):
        irs_unet(1, 4)(torch.randn(1, 1, 3, 3))


@pytest.mark.parametrize("method,forwards", [("irs", 1), ("salman", 2)])
def test_training_uses_only_the_surrogate_and_lowers_the_loss(method: str, forwards: int) -> None:
    torch.manual_seed(0)
    clf = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    sur = WhiteBox(clf, input_shape=SHAPE)
    w0 = clf[1].weight.clone()
    res = train_denoiser(sur, _data(8), IRSConfig(method=method, epochs=3, batch_size=8, width=4,  # type: ignore[arg-type]
                                                   optimizer="adam", lr=1e-2, seed=0))
    assert res.surrogate_queries == sur.stats.queries == 3 * 8 * forwards
    assert torch.equal(clf[1].weight, w0)  # the surrogate is not trained
    assert all(p.requires_grad for p in clf.parameters())  # and is given back as it was
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert not res.denoiser.training


def test_config_errors() -> None:
    with pytest.raises(InputError, match="unknown denoiser method 'dncnn'"):
        IRSConfig(method="dncnn").check()  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"sigma must be > 0, got -0\.5"):
        IRSConfig(sigma=-0.5).check()
    with pytest.raises(InputError, match="std > 0"):
        IRSDenoiser(Identity(), method="irs", mean=(0.1,), std=(0.0,))


def test_bpda_attack_lowers_accuracy_of_undefended_linear_model() -> None:
    torch.manual_seed(0)
    x = _data(20).x
    clf = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    y = clf(x).argmax(1)
    adv, clean = bpda_pgd_accuracy(clf, None, x, y, sigma=0.01, eps=3.0, steps=10, seed=0)
    assert clean >= 0.9 and adv < clean
    pipe = NoisyPipeline(clf, None, 0.1, seed=0)
    assert pipe.randomized and not torch.equal(pipe(x), pipe(x))


def test_unet_absorbs_the_scale_of_input_normalisation_in_train_mode() -> None:
    """Why IRS-Net at matched pixel noise is close to Salman up to its loss: the UNet's first conv is followed by
    BatchNorm, which removes a positive input scale 1 / std exactly (up to BN's eps); the shift -mean / std is
    is not (the convolutions' zero padding sees it at the borders, and the receptive field spreads it)."""
    torch.manual_seed(0)
    unet = irs_unet(1, 4).train()
    x = torch.rand(16, *SHAPE, generator=torch.Generator().manual_seed(1))
    a = unet(x)
    assert torch.allclose(a, unet(x / 0.3081), atol=1e-3), float((a - unet(x / 0.3081)).abs().max())
    assert not torch.allclose(a, unet(-x), atol=1e-2)  # a sign flip is not absorbed
