"""The tiny linear classifier the attack and DUCD tests share: ``logits = W flatten(x) + b``.

Linear models give exact answers (minimal adversarial distances, smoothing probabilities), so the tests built on
them can check results, not just shapes. Importable from any test module (``tests/`` is on ``sys.path``)."""

from __future__ import annotations

import torch
from torch import nn


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
