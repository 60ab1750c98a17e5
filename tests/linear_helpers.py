"""The tiny linear classifier the attack and DUCD tests share: ``logits = W flatten(x) + b``.

Linear models give exact answers (minimal adversarial distances, smoothing probabilities), so the tests built on
them can check results, not just shapes. Importable from any test module (``tests/`` is on ``sys.path``)."""

from __future__ import annotations

import torch
from torch import nn

from bbdefense.models import BlackBox


class Linear(nn.Module):
    """``logits = W flatten(x) + b``; ``w`` ``(K, d)``, ``b`` ``(K,)``, any input of ``d`` values per image."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.lin = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.lin.weight.copy_(w)
            self.lin.bias.copy_(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1))


class Linear2(nn.Module):
    """Binary linear classifier: class 1 iff ``w . flatten(x) + b > 0`` (logits ``[0, w.x + b]``, computed in
    float64 so decisions at the boundary are exact). Under Gaussian noise its smoothing probability has a
    closed form, ``Phi((w.x + b) / (sigma ||w||))``."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w, self.b = w.double(), float(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1).double() @ self.w + self.b
        return torch.stack([torch.zeros_like(s), s], 1).float()


def binary_linear_setup(w: torch.Tensor, margin: float, n_img: int,
                        shape: tuple[int, int, int]) -> tuple[BlackBox, torch.Tensor]:
    """A :class:`Linear2` black box and ``n_img`` copies of one mid-grey image with margin ``w.x + b = margin``."""
    x = torch.full((n_img, *shape), 0.5)
    b = margin - float(w.double() @ x[0].flatten().double())
    return BlackBox.from_module(Linear2(w, b), num_classes=2, input_shape=shape), x
