"""The pre-processor hook of bbdefense.certify.Smooth (denoised smoothing: ZO-AE-DS, IRS-Net, Salman et al.),
checked against exact answers on linear black boxes, alone and with IRS-Net's per-channel noise scale."""
from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm
from torch import nn

from bbdefense.certify import Smooth, make_noise
from bbdefense.certify.stats import cp_lower
from bbdefense.errors import InputError
from bbdefense.models import BlackBox

SHAPE = (1, 4, 4)


class Linear2(nn.Module):
    """Class 1 iff ``w . flatten(x) + b > 0``."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(s), s], 1)


class Shrink(nn.Module):
    """A toy 'denoiser': pulls every pixel towards 0.5 by ``k`` (so noise of std s leaves std k s)."""

    def __init__(self, k: float) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 + self.k * (x - 0.5)


def _bb(margin: float) -> tuple[BlackBox, torch.Tensor, torch.Tensor]:
    w = torch.ones(16) / 4.0  # ||w|| = 1
    x = torch.full((3, *SHAPE), 0.5)
    return BlackBox.from_module(Linear2(w, margin - float(w @ x[0].flatten())), num_classes=2,
                                input_shape=SHAPE), x, w


def test_pre_runs_after_the_noise_and_every_query_is_charged() -> None:
    bb, x, _ = _bb(-0.1)  # class 0 at x, class 1 after a constant pre that outputs all-ones images
    seen: list[float] = []

    def pre(z: torch.Tensor) -> torch.Tensor:
        seen.append(float((z - 0.5).std()))
        return torch.ones_like(z)

    certs = Smooth(bb, make_noise("gaussian", sigma=0.3), norms=("l2",), pre=pre).certify(x, n0=10, n=90, alpha=0.01)
    assert all(c.label == 1 and c.counts == [0, 90] for c in certs)
    assert certs[0].pA_lower == pytest.approx(cp_lower(90, 90, 0.01))
    assert certs[0].radius["l2"] == pytest.approx(0.3 * norm.ppf(cp_lower(90, 90, 0.01)))
    assert bb.stats.queries == 3 * 100
    assert abs(sum(seen) / len(seen) - 0.3) < 0.05  # the pre saw the noisy images, std sigma


def test_pre_changes_the_smoothed_probability_exactly_as_predicted() -> None:
    """f(pre(x + e)) with pre = Shrink(k): margin m, noise along w of std k sigma -> pA = Phi(m / (k sigma))."""
    bb, x, _ = _bb(0.1)
    sigma, k, n = 0.5, 0.25, 4000
    certs = Smooth(bb, make_noise("gaussian", sigma=sigma), norms=("l2",), pre=Shrink(k)).certify(
        x, n0=50, n=n, alpha=0.001, seed=3)
    p = norm.cdf(0.1 / (k * sigma))
    for c in certs:
        assert abs(c.counts[1] / n - p) < 4 * math.sqrt(p * (1 - p) / n), (c.counts, p)
    plain = Smooth(bb, make_noise("gaussian", sigma=sigma), norms=("l2",)).certify(x, n0=50, n=n, alpha=0.001, seed=3)
    assert all(a.counts[1] > b.counts[1] for a, b in zip(certs, plain, strict=True))  # without the pre: Phi(0.2) only


def test_pre_with_a_per_channel_scale_matches_the_closed_form() -> None:
    """IRS-Net's setting: noise std sigma * s_c on channel c, then pre = Shrink(k), then a linear box.
    f(pre(x + S u)) = 1[w.x + b + k w.S u > 0] -> pA = Phi(m / (k sigma ||S w||)); radius scales by min(s)."""
    shape = (3, 2, 2)
    w = torch.tensor([1.0] * 4 + [-2.0] * 4 + [0.5] * 4)
    x = torch.full((4, *shape), 0.5)
    margin, sigma, k, n, s = 0.2, 0.5, 0.5, 3000, (0.3, 0.6, 0.9)
    bb = BlackBox.from_module(Linear2(w, margin - float(w @ x[0].flatten())), num_classes=2, input_shape=shape)
    certs = Smooth(bb, make_noise("gaussian", sigma=sigma), norms=("l2",), pre=Shrink(k), scale=s).certify(
        x, n0=50, n=n, alpha=0.001, seed=2, indices=[10, 11, 12, 13])
    sw = float((w * torch.tensor(s).repeat_interleave(4)).norm())
    p = norm.cdf(margin / (k * sigma * sw))
    k1 = sum(c.counts[1] for c in certs)
    assert abs(k1 / (4 * n) - p) < 4 * math.sqrt(p * (1 - p) / (4 * n)), (k1 / (4 * n), p)
    for c in certs:
        assert c.label == 1
        assert c.radius["l2"] == pytest.approx(sigma * 0.3 * norm.ppf(c.pA_lower), rel=1e-6)


def test_pre_sees_unclipped_noise_and_results_do_not_depend_on_batching() -> None:
    """As Salman et al. / ZO-AE-DS: the denoiser gets x + noise unclipped (values outside [0, 1]); each image's
    noise stream is its own, so batch size and chunking (with indices) leave the counts unchanged."""
    bb, x, _ = _bb(0.05)
    lo: list[float] = []

    def pre(z: torch.Tensor) -> torch.Tensor:
        lo.append(float(z.min()))
        return Shrink(0.5)(z)

    sm = Smooth(bb, make_noise("gaussian", sigma=0.5), norms=("l2",), pre=pre)
    a = sm.certify(x, n0=20, n=500, batch_size=37, seed=8)
    b = sm.certify(x, n0=20, n=500, batch_size=2000, seed=8)
    c = sm.certify(x[1:], n0=20, n=500, batch_size=100, seed=8, indices=[1, 2])
    assert min(lo) < 0.0
    assert [v.counts for v in a] == [v.counts for v in b]
    assert [v.counts for v in a[1:]] == [v.counts for v in c]
    assert [v.counts0 for v in a[1:]] == [v.counts0 for v in c]


def test_pre_must_be_callable() -> None:
    bb, _, _ = _bb(0.1)
    with pytest.raises(InputError, match="pre must be callable"):
        Smooth(bb, make_noise("gaussian", sigma=0.5), pre=3)  # type: ignore[arg-type]
