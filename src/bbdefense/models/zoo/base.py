"""Shared pieces of the model zoo: the normalisation layer and the classifier base class."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel: the **first layer** of every classifier in the zoo.

    Because normalisation lives inside the model, eps-balls and certified radii are always in
    [0, 1] pixel space (Cohen et al. 2019, ``NormalizeLayer``).

    Shape: ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """

    mean: Tensor  # buffers (1, C, 1, 1), registered in __init__
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std must have the same length, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be > 0, got {list(std)}")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class ImageClassifier(nn.Module):
    """Base of every zoo classifier: ``logits = head(embed(x))`` with ``embed`` starting by
    :class:`Normalize`.

    Subclasses set ``self.normalize``, ``self.body`` (normalised image -> penultimate features
    ``(N, D)``) and ``self.head`` (``nn.Linear(D, K)``). The split is what owner-side defenses need:
    UniG acts on the penultimate features, RFD hooks named layers of ``body``.

    Shape: ``(N, C, H, W)`` in [0, 1] -> logits ``(N, K)``.
    """

    normalize: Normalize
    body: nn.Module
    head: nn.Linear

    def embed(self, x: Tensor) -> Tensor:
        """Penultimate features ``(N, D)``."""
        return self.body(self.normalize(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x))

    @property
    def feature_dim(self) -> int:
        return int(self.head.in_features)

    @property
    def num_classes(self) -> int:
        return int(self.head.out_features)
