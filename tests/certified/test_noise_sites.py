"""Noise is drawn through ``certify.Noise`` everywhere (issue 15), bit-identical to the hand-drawn code it replaced.

Each test computes the old expression (copied from the code before the change) and the new call on a seeded
input with generators seeded alike, and compares the tensors exactly (``torch.equal``), so the documented
figures that depend on these draws (IRS-Net Tables I and V, DUCD purification curves, RND/RFD) cannot move.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bbdefense.certified.irs.bpda import NoisyPipeline
from bbdefense.certified.irs.irs_net import IRSDenoiser, noisy_input
from bbdefense.certify import Smooth, make_noise
from bbdefense.defenses.rfd import RandomizedFeatureDefense
from bbdefense.defenses.rnd import RandomNoiseDefense
from bbdefense.models import BlackBox
from bbdefense.utils import make_generator

MNIST_STD = (0.3081,)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def _x(c: int, seed: int = 5) -> torch.Tensor:
    return torch.rand((6, c, 8, 8), generator=make_generator(seed))


def _den(method: str, std: tuple[float, ...]) -> IRSDenoiser:
    return IRSDenoiser(nn.Identity(), method=method, mean=(0.5,) * len(std), std=std)


@pytest.mark.parametrize("std", [MNIST_STD, CIFAR_STD])
@pytest.mark.parametrize("method", ["irs", "salman", None])
@pytest.mark.parametrize("sigma", [0.25, 0.5, 0.5 / 0.3081])
def test_irs_noisy_input_matches_hand_drawn(std: tuple[float, ...], method: str | None, sigma: float) -> None:
    x = _x(len(std))
    den = _den(method, std) if method else None
    # experiments/papers/irs_net.py noisy_accuracy, before
    scale = den.noise_scale.view(1, -1, 1, 1) if den is not None else torch.ones(1, x.shape[1], 1, 1)
    old = x + sigma * scale * torch.randn(x.shape, generator=make_generator(3))
    assert torch.equal(noisy_input(den, sigma, x, make_generator(3)), old)
    # certified/irs/bpda.py NoisyPipeline.forward and vote_accuracy, before (1.0 when there is no denoiser)
    scale2 = den.noise_scale.view(1, -1, 1, 1) if den is not None else 1.0
    g_old, g_new = make_generator(4), make_generator(4)
    for _ in range(3):  # consecutive draws from one generator stay in step
        old = x + sigma * scale2 * torch.randn(x.shape, generator=g_old).to(x.device)
        assert torch.equal(noisy_input(den, sigma, x, g_new), old)


def test_bpda_pipeline_draws_through_noise() -> None:
    x = _x(1)
    den = _den("irs", MNIST_STD)
    pipe = NoisyPipeline(nn.Flatten(), den, 0.5, seed=9)
    out = pipe(x)
    g = make_generator(9)
    noisy = x + 0.5 * den.noise_scale.view(1, -1, 1, 1) * torch.randn(x.shape, generator=g)
    ref = den(noisy).clamp(0, 1).flatten(1)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("s", [0.05, 0.3])
def test_purification_noise_matches_hand_drawn(s: float) -> None:
    x = _x(1)
    g_old = torch.Generator(device=x.device).manual_seed(7 + 7919)
    g_new = torch.Generator(device=x.device).manual_seed(7 + 7919)
    old = (x + float(s) * torch.randn(x.shape, generator=g_old, device=x.device)).clamp(0.0, 1.0)
    new = (x + make_noise("gaussian", sigma=float(s)).sample(x.shape, g_new)).clamp(0.0, 1.0)
    assert torch.equal(new, old)


def test_noise_sample_scale_is_smooths_scale() -> None:
    """``Noise.sample(scale=)`` multiplies channel c by ``scale[c]``: the product ``Smooth(scale=)``'s streams apply."""
    noise, scale = make_noise("gaussian", sigma=0.5), torch.tensor(CIFAR_STD)
    g_old, g_new = make_generator(11), make_generator(11)
    old = noise.sample((4, 3, 5, 5), g_old) * scale.view(-1, 1, 1)
    assert torch.equal(noise.sample((4, 3, 5, 5), g_new, scale=scale), old)
    bb = BlackBox.from_module(nn.Sequential(nn.Flatten(), nn.Linear(75, 2)), input_shape=(3, 5, 5))
    assert torch.equal(Smooth(bb, noise, scale=scale).scale, scale)


def test_noise_sample_scale_checks_channels() -> None:
    from bbdefense.errors import InputError

    with pytest.raises(InputError, match="one value per channel"):
        make_noise("gaussian", sigma=0.5).sample((2, 3, 4, 4), make_generator(0), scale=torch.ones(2))


def test_owner_noise_defenses_match_hand_drawn() -> None:
    x = _x(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    rnd = RandomNoiseDefense(net, nu=0.05, clip=True, seed=1)
    g = make_generator(1, x.device)
    old_in = (x + 0.05 * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)).clamp(0.0, 1.0)
    with torch.no_grad():
        assert torch.equal(rnd(x), net(old_in))
    rfd = RandomizedFeatureDefense(net, nu=0.1, layers=["0"], seed=2)
    g = make_generator(2, x.device)
    h = x.flatten(1)
    old_h = h + 0.1 * torch.randn(h.shape, generator=g, device=h.device, dtype=h.dtype)
    with torch.no_grad():
        assert torch.equal(rfd(x), net[1](old_h))
