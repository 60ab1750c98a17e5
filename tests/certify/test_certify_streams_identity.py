"""The fast sampling loop (reused per-stream buffers, in-place noise, packing straight into the batch, a
prefetch thread, bincount) draws exactly what the straightforward loop drew: counts are bit-identical to a
plain reference implementation and to a digest recorded with the previous implementation (main at ea2d865),
for every noise family, with clip and per-channel scale, at several batch sizes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from bbdefense.certify import Smooth, make_noise
from bbdefense.certify.streams import image_seed
from bbdefense.models import BlackBox

FAMILIES = [("gaussian", {}), ("laplace", {}), ("uniform", {}), ("gen_gaussian", {"beta": 1.5}),
            ("pareto", {"k": 3.0}), ("cauchy", {})]
# sha256 of grid_results() computed with the implementation before this change (git show ea2d865)
OLD_DIGEST = "eb19df715f035b3657c9ef5607b8208be9af9c8e57c4563fd5a6ceb7333c3f3f"


def hash_model(z: Tensor) -> Tensor:
    """A label that moves with the last bits of the input: floor(1000 * sum(z)) mod 10, as one-hot logits."""
    lab = (torch.floor(z.double().sum((1, 2, 3)) * 1000) % 10).long()
    return torch.nn.functional.one_hot(lab, 10).float()


def dominant_model(z: Tensor) -> Tensor:
    """Class 3 on ~80% of the noise, else the hash class (for the sequential test to run a while)."""
    lab = (torch.floor(z.double().sum((1, 2, 3)) * 1000) % 10).long()
    return torch.nn.functional.one_hot(torch.where(lab < 8, 3, lab), 10).float()


def bb(fn: Callable[[Tensor], Tensor] = hash_model) -> BlackBox:
    return BlackBox.from_callable(fn, num_classes=10, input_shape=(2, 6, 6), output="logits")


X = torch.rand(3, 2, 6, 6, generator=torch.Generator().manual_seed(5))


def reference_counts(noise_name: str, kw: dict, clip: bool, scale: list[float] | None, n: int, seed: int,
                     indices: list[int], phase: int = 1) -> list[list[int]]:
    """The straightforward loop: per image, blocks of 256 from its own generator, x + eps, one forward."""
    noise = make_noise(noise_name, sigma=0.5, **kw)
    out = []
    for xi, idx in zip(X, indices, strict=True):
        g = torch.Generator().manual_seed(image_seed(seed, idx, phase))
        blocks, drawn = [], 0
        while drawn < n:
            b = min(256, n - drawn)
            eps = noise.sample((b, *X.shape[1:]), g)
            if scale is not None:
                eps = eps * torch.tensor(scale, dtype=torch.float32).view(-1, 1, 1)
            blocks.append(eps)
            drawn += b
        xb = xi[None] + torch.cat(blocks)
        if clip:
            xb = xb.clamp(0.0, 1.0)
        labels = hash_model(xb).argmax(1)
        out.append(torch.bincount(labels, minlength=10).tolist())
    return out


def grid_results() -> dict[str, object]:
    out: dict[str, object] = {}
    for name, kw in FAMILIES:
        for clip, scale in ((False, None), (True, [0.5, 2.0])):
            for bs in (7, 128):
                sm = Smooth(bb(), make_noise(name, sigma=0.5, **kw), clip=clip, scale=scale)
                counts = sm.sample_counts(X, 300, seed=3, batch_size=bs, indices=[4, 9, 11])
                out[f"{name}|{clip}|{bs}"] = counts.tolist()
                if name in ("gaussian", "laplace", "uniform"):
                    sd = Smooth(bb(dominant_model), make_noise(name, sigma=0.5, **kw), clip=clip, scale=scale)
                    certs = sd.certify(X, n0=20, method="sequential", max_n=2000, radii=(0.1, 0.2), batch_size=bs,
                                       seed=1, alpha=0.01)
                    out[f"seq|{name}|{clip}|{bs}"] = [(c.label, c.n, c.counts, c.counts0) for c in certs]
    return out


def digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def test_counts_bit_identical_to_previous_implementation() -> None:
    assert digest(grid_results()) == OLD_DIGEST


@pytest.mark.parametrize(("name", "kw"), FAMILIES)
@pytest.mark.parametrize("bs", [1, 50, 1000])
def test_counts_equal_reference_loop(name: str, kw: dict, bs: int) -> None:
    n = 100 if bs == 1 else 600  # 600 > two blocks of 256 per image; batch 1000 > one image
    for clip, scale in ((False, None), (True, [0.5, 2.0])):
        sm = Smooth(bb(), make_noise(name, sigma=0.5, **kw), clip=clip, scale=scale)
        got = sm.sample_counts(X, n, seed=3, batch_size=bs, indices=[4, 9, 11]).tolist()
        assert got == reference_counts(name, kw, clip, scale, n, 3, [4, 9, 11])
