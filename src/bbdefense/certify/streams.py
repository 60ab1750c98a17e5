"""Per-image noise streams of :class:`~bbdefense.certify.Smooth` (one generator per image, phase and seed, so
results do not depend on batching or grouping) and the class-count accumulator both procedures share."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from .noises import Noise

_BLOCK = 256  # noise is drawn per image in blocks of this many samples (independent of batch_size)


def image_seed(seed: int, index: int, phase: int) -> int:
    """The seed of image ``index``'s noise stream in ``phase`` (0 selection, 1 estimation, 2 predict)."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index) & 0xFFFFFFFF, int(phase)])
    return int(ss.generate_state(1, dtype=np.uint64)[0] & 0x7FFF_FFFF_FFFF_FFFF)



class NoiseStream:
    """One image's noise stream: blocks of ``min(_BLOCK, total - drawn)`` draws from its own generator (so
    Cohen with ``n`` and a sequential run with ``max_n = n`` see the same draws), handed out in order."""

    def __init__(self, noise: Noise, scale: Tensor | None, x: Tensor, seed: int, total: int) -> None:
        self.noise, self.scale, self.shape, self.total = noise, scale, tuple(x.shape[1:]), total
        self.device, self.seed = x.device, seed
        self.g: torch.Generator | None = None
        self.drawn = 0
        self.buf: Tensor | None = None

    def take(self, m: int) -> Tensor:
        parts = []
        while m > 0:
            if self.buf is None or self.buf.shape[0] == 0:
                if self.g is None:
                    self.g = torch.Generator(device=self.device).manual_seed(self.seed)
                b = min(_BLOCK, self.total - self.drawn)
                if b <= 0:
                    raise InputError(f"noise stream exhausted after {self.total} draws")
                eps = self.noise.sample((b, *self.shape), self.g)
                sc = self.scale
                if sc is not None:
                    eps = eps * sc.to(device=eps.device, dtype=eps.dtype).view(-1, *[1] * (len(self.shape) - 1))
                self.drawn += b
                self.buf = eps
            k = min(m, self.buf.shape[0])
            parts.append(self.buf[:k])
            self.buf = self.buf[k:]
            m -= k
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def add_counts(counts: Tensor, own: Tensor, labels: Tensor) -> None:
    """Add each label to its owner's row of ``counts`` ``(N, K)``; labels outside ``[0, K)`` count for no class."""
    ok = (labels >= 0) & (labels < counts.shape[1])
    counts.index_put_((own[ok], labels[ok]), torch.ones(int(ok.sum()), dtype=torch.int64), accumulate=True)


__all__ = ["NoiseStream", "add_counts", "image_seed"]
