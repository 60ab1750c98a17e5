"""Linear classifiers with known minimal adversarial distances (shared by the attacks2 tests)."""

from __future__ import annotations

import torch

from linear_helpers import Linear

SHAPE = (3, 8, 8)


def binary_problem(n: int = 8, seed: int = 0) -> tuple[Linear, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 2-class linear model, images in [0.3, 0.7] (the box never binds) and their exact
    minimal distances: l2 = |margin| / ||w1 - w0||_2, linf = |margin| / ||w1 - w0||_1."""
    g = torch.Generator().manual_seed(seed)
    d = SHAPE[0] * SHAPE[1] * SHAPE[2]
    w = torch.randn(2, d, generator=g)
    model = Linear(w, torch.zeros(2))
    x = 0.3 + 0.4 * torch.rand(n, *SHAPE, generator=g)
    dw = w[1] - w[0]
    margin = x.flatten(1) @ dw
    y = (margin > 0).long()
    return model, x, y, margin.abs() / dw.norm(), margin.abs() / dw.abs().sum()


def multiclass_model(k: int = 10, seed: int = 0) -> Linear:
    g = torch.Generator().manual_seed(seed)
    d = SHAPE[0] * SHAPE[1] * SHAPE[2]
    return Linear(torch.randn(k, d, generator=g) * 0.3, torch.zeros(k))

