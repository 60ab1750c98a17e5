"""Per-image noise streams of :class:`~bbdefense.certify.Smooth` (one generator per image, phase and seed, so
results do not depend on batching or grouping), the packing of their draws into forward batches, and the
class-count accumulator both procedures share.

Speed without changing a single draw: each stream draws its blocks into one reused buffer
(:meth:`~bbdefense.certify.noises.Noise.sample_into`, in place), and :func:`pack` writes ``x_i + eps`` straight
into the forward batch (one pass, no per-part tensors and no concatenation); counts are added with one
``bincount`` per batch. The draws, their order and every float operation on them are those of the
straightforward implementation (``x[i:i+1] + noise.sample(block)`` per part, concatenated), which
``tests/certify/test_certify_streams_identity.py`` checks bit for bit.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

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
        self.noise, self.total = noise, total
        self.shape: tuple[int, ...] = tuple(x.shape[1:])
        self.device, self.seed = x.device, seed
        self.scale = None if scale is None else scale.to(device=x.device, dtype=torch.float32).view(
            -1, *[1] * (len(self.shape) - 1))
        self.g: torch.Generator | None = None
        self.drawn = 0
        self.block: Tensor | None = None  # the current block's draws: rows [pos, avail) not handed out yet
        self.pos = self.avail = 0

    def _refill(self) -> None:
        b = min(_BLOCK, self.total - self.drawn)
        if b <= 0:
            raise InputError(f"noise stream exhausted after {self.total} draws")
        if self.g is None:
            self.g = torch.Generator(device=self.device).manual_seed(self.seed)
        if self.block is None or self.block.shape[0] < b:
            self.block = torch.empty((b, *self.shape), device=self.device)
        blk = self.noise.sample_into(self.block[:b], self.g)
        if self.scale is not None:
            blk.mul_(self.scale)
        self.drawn += b
        self.pos, self.avail = 0, b

    def add_to(self, xi: Tensor, out: Tensor) -> None:
        """``out[j] = xi + eps_j`` for the next ``len(out)`` draws ``eps_j`` of this stream."""
        t, m = 0, out.shape[0]
        while t < m:
            if self.pos == self.avail:
                self._refill()
            assert self.block is not None
            k = min(m - t, self.avail - self.pos)
            torch.add(xi, self.block[self.pos:self.pos + k], out=out[t:t + k])
            self.pos += k
            t += k
        if self.drawn == self.total and self.pos == self.avail:
            self.block = None  # exhausted: free the block


def pack(x: Tensor, streams: list[NoiseStream], pending: deque[list[int]], size: int,
         clip: bool) -> tuple[Tensor, Tensor]:
    """The next forward batch: ``size`` noisy images requested at the front of ``pending`` (``[image, draws
    left]``, drawn from each image's own stream in order), clamped to [0, 1] with ``clip``. Returns the owners
    ``(size,)`` int64 and the batch ``(size, *shape)`` (a fresh tensor: a backend may keep it)."""
    xb = torch.empty((size, *x.shape[1:]), dtype=x.dtype, device=x.device)
    ids, lens, take = [], [], 0
    while take < size:
        req = pending[0]
        m = min(req[1], size - take)
        streams[req[0]].add_to(x[req[0]], xb[take:take + m])
        ids.append(req[0])
        lens.append(m)
        req[1] -= m
        if req[1] == 0:
            pending.popleft()
        take += m
    if clip:
        xb.clamp_(0.0, 1.0)
    own = torch.full((size,), ids[0], dtype=torch.int64) if len(ids) == 1 else \
        torch.repeat_interleave(torch.tensor(ids, dtype=torch.int64), torch.tensor(lens, dtype=torch.int64))
    return own, xb


def check_scale(scale: Tensor | Sequence[float] | None, input_shape: tuple[int, ...]) -> Tensor | None:
    """``scale`` as a float32 ``(C,)`` CPU tensor of positive finite values (None stays None)."""
    if scale is None:
        return None
    try:
        t = (scale.detach().cpu() if isinstance(scale, Tensor) else torch.as_tensor(scale)).to(torch.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"scale must be a (C,) sequence of positive floats, got {scale!r}") from exc
    c = int(input_shape[0]) if input_shape else 1
    if t.dim() != 1 or t.numel() != c:
        raise InputError(f"scale must hold one value per channel ({c} for input shape {input_shape}), "
                         f"got shape {tuple(t.shape)}: {t.tolist()}")
    bad = [float(v) for v in t if not (math.isfinite(float(v)) and float(v) > 0)]
    if bad:
        raise InputError(f"scale values must be finite and > 0, got {bad[0]!r} in {t.tolist()}")
    return t.to(torch.float32)


def add_counts(counts: Tensor, own: Tensor, labels: Tensor) -> None:
    """Add each label to its owner's row of ``counts`` ``(N, K)`` (contiguous); labels outside ``[0, K)`` count
    for no class. One ``bincount`` over the owners' row range of this batch."""
    k = counts.shape[1]
    ok = (labels >= 0) & (labels < k)
    if not bool(ok.all()):
        own, labels = own[ok], labels[ok]
    if own.numel() == 0:
        return
    lo, hi = int(own.min()), int(own.max())
    rows = counts[lo:hi + 1].view(-1)
    rows.add_(torch.bincount((own - lo) * k + labels, minlength=rows.numel()))


__all__ = ["NoiseStream", "add_counts", "check_scale", "image_seed", "pack"]
