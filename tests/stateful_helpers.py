"""Synthetic MNIST-shaped images for the stateful detector tests: distinct 'digits' (a black background and a
few bright strokes each), as a detector sees them."""

from __future__ import annotations

import torch

SHAPE = (1, 28, 28)


def digits(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` distinct synthetic digits ``(n, 1, 28, 28)`` in [0, 1], seeded."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, *SHAPE)
    for i in range(n):
        for _ in range(4):
            r, c = (int(v) for v in torch.randint(4, 22, (2,), generator=g))
            h, w = (int(v) for v in torch.randint(2, 7, (2,), generator=g))
            x[i, 0, r:r + h, c:c + w] = torch.rand((), generator=g) * 0.5 + 0.5
    return x
