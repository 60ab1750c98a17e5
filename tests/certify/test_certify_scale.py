"""Smooth with a per-channel noise scale: exact answers on linear black boxes under anisotropic noise.

For ``f(x) = 1[w.x + b > 0]`` and ``eps = S u``, ``u ~ N(0, sigma^2 I)``, ``S = diag(scale_c)`` per channel:
``P(f(x + eps) = 1) = Phi((w.x + b) / (sigma ||S w||))``; the smoothed classifier of a linear classifier is
the classifier itself, so its true l2 radius is ``|w.x + b| / ||w||``.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm
from torch import nn

from bbdefense.certify import Smooth, make_noise
from bbdefense.errors import InputError
from bbdefense.models import BlackBox
from linear_helpers import binary_linear_setup

SHAPE = (3, 2, 2)
D = 12
SCALE = (0.25, 0.5, 1.0)


def _setup(w: torch.Tensor, margin: float, n_img: int) -> tuple[BlackBox, torch.Tensor]:
    return binary_linear_setup(w, margin, n_img, SHAPE)


def _sw_norm(w: torch.Tensor, scale: tuple[float, ...]) -> float:
    s = torch.tensor(scale, dtype=torch.float64).repeat_interleave(D // len(scale))
    return float((w.double() * s).norm())


class Constant(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([0.0, 1.0, 0.0]).expand(x.shape[0], 3)


def test_counts_match_the_anisotropic_closed_form() -> None:
    """Counts are Binomial(n, Phi(m / (sigma ||S w||))) and differ from the isotropic Phi(m / (sigma ||w||))."""
    w = torch.tensor([2.0] * 4 + [0.5] * 4 + [-1.0] * 4)
    sigma, n, imgs, margin = 0.5, 2000, 8, 0.3
    bb, x = _setup(w, margin, imgs)
    certs = Smooth(bb, make_noise("gaussian", sigma=sigma), norms=("l2",), scale=SCALE).certify(
        x, n0=20, n=n, alpha=0.001, seed=7)
    p = norm.cdf(margin / (sigma * _sw_norm(w, SCALE)))
    p_iso = norm.cdf(margin / (sigma * float(w.norm())))
    k = sum(c.counts[1] for c in certs)
    se = math.sqrt(imgs * n * p * (1 - p))
    assert abs(k - imgs * n * p) < 4 * se, (k / (imgs * n), p)
    assert abs(k - imgs * n * p_iso) > 10 * se  # the scale really acts per channel
    assert bb.stats.queries == imgs * (20 + n)


def test_noise_is_multiplied_per_channel() -> None:
    """The noisy images the black box sees have per-channel std sigma * scale[c] around x."""
    seen: list[torch.Tensor] = []

    def pre(z: torch.Tensor) -> torch.Tensor:
        seen.append(z.clone())
        return torch.full_like(z, 0.5)

    bb, x = _setup(torch.ones(D), 0.1, 2)
    Smooth(bb, make_noise("gaussian", sigma=0.4), scale=torch.tensor(SCALE), pre=pre).sample_counts(x, 3000, seed=1)
    z = torch.cat(seen) - 0.5
    std = z.transpose(0, 1).reshape(3, -1).std(dim=1)
    for c, s in enumerate(SCALE):
        assert abs(float(std[c]) - 0.4 * s) < 0.03 * 0.4 * s, (c, float(std[c]))


def test_radius_is_scaled_by_min_scale_for_every_norm_and_family() -> None:
    """On a constant classifier pA_lower is the same with or without scale; radii differ by exactly min(scale)."""
    bb = BlackBox.from_module(Constant(), num_classes=3, input_shape=SHAPE)
    x = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(0))
    for family in ("gaussian", "laplace", "uniform"):
        nz = make_noise(family, sigma=0.3)
        plain = Smooth(bb, nz).certify(x, n0=10, n=200, seed=2)
        scaled = Smooth(bb, nz, scale=[0.7, 0.2, 1.5]).certify(x, n0=10, n=200, seed=2)
        for a, b in zip(plain, scaled, strict=True):
            assert a.label == b.label == 1 and a.pA_lower == b.pA_lower
            assert a.radius_method == b.radius_method
            for nm in ("l1", "l2", "linf"):
                assert b.radius[nm] == pytest.approx(a.radius[nm] * float(torch.tensor(0.2)), rel=1e-12), (family, nm)


def test_certified_radius_is_sound_and_tight_along_the_smallest_scale() -> None:
    """Certified l2 radius = sigma Phi^-1(pA_lower) min(s) <= m / ||w|| (the true radius) whenever pA_lower <= pA;
    with w on the smallest-scale channel only the bound is tight (radius -> true radius as pA_lower -> pA)."""
    sigma, n, margin = 0.5, 20_000, 0.3
    for w, tight in ((torch.tensor([1.0] * 4 + [0.0] * 8), True), (torch.tensor([0.3] * 4 + [1.0] * 8), False)):
        bb, x = _setup(w, margin, 3)
        certs = Smooth(bb, make_noise("gaussian", sigma=sigma), norms=("l2",), scale=SCALE).certify(
            x, n0=50, n=n, alpha=0.001, seed=3)
        p = norm.cdf(margin / (sigma * _sw_norm(w, SCALE)))
        true_r = margin / float(w.norm())
        for c in certs:
            assert c.label == 1 and c.pA_lower <= p
            assert c.radius["l2"] == pytest.approx(sigma * norm.ppf(c.pA_lower) * 0.25, rel=1e-6)
            assert c.radius["l2"] <= true_r
            if tight:
                assert c.radius["l2"] > 0.85 * true_r
            else:
                assert c.radius["l2"] < 0.5 * true_r


def test_results_do_not_depend_on_batch_size_or_grouping() -> None:
    bb, x = _setup(torch.linspace(-1, 1, D), 0.05, 4)
    sm = Smooth(bb, make_noise("laplace", sigma=0.5), scale=SCALE)
    a = sm.certify(x, n0=10, n=300, batch_size=7, seed=9)
    b = sm.certify(x, n0=10, n=300, batch_size=1000, seed=9)
    c = sm.certify(x[2:], n0=10, n=300, batch_size=64, seed=9, indices=[2, 3])
    assert [v.counts for v in a] == [v.counts for v in b]
    assert [v.counts for v in a[2:]] == [v.counts for v in c]


def test_unit_scale_is_bit_identical_to_no_scale() -> None:
    bb, x = _setup(torch.linspace(-1, 1, D), 0.05, 3)
    nz = make_noise("gaussian", sigma=0.5)
    a = Smooth(bb, nz).certify(x, n0=10, n=400, seed=4)
    b = Smooth(bb, nz, scale=(1.0, 1.0, 1.0)).certify(x, n0=10, n=400, seed=4)
    assert [v.to_dict() for v in a] == [v.to_dict() for v in b]


@pytest.mark.parametrize("bad, match", [
    ((1.0, 2.0), r"3 for input shape.*\[1\.0, 2\.0\]"),
    ((1.0, 0.0, 2.0), r"got 0\.0"),
    ((1.0, -0.5, 2.0), r"got -0\.5"),
    ((1.0, float("nan"), 2.0), r"got nan"),
    ([[1.0, 1.0, 1.0]], r"got shape \(1, 3\)"),
    ("abc", r"scale must be"),
])
def test_scale_validation_names_the_bad_value(bad: object, match: str) -> None:
    bb, _ = _setup(torch.ones(D), 0.1, 1)
    with pytest.raises(InputError, match=match):
        Smooth(bb, make_noise("gaussian", sigma=0.5), scale=bad)  # type: ignore[arg-type]


def test_describe_records_the_scale() -> None:
    bb, _ = _setup(torch.ones(D), 0.1, 1)
    assert Smooth(bb, make_noise("gaussian", sigma=0.5)).describe()["scale"] is None
    d = Smooth(bb, make_noise("gaussian", sigma=0.5), scale=torch.tensor(SCALE)).describe()
    assert d["scale"] == [0.25, 0.5, 1.0]
