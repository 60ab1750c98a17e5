"""The in-memory image dataset every loader returns, and the dataset registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..errors import DataError
from ..registry import Registry


@dataclass
class ImageDataset:
    """Images ``x`` ``(N, C, H, W)`` float32 in [0, 1] and labels ``y`` ``(N,)`` int64.

    ``mean``/``std`` are the per-channel normalisation a classifier of this dataset puts in its
    first layer. ``official_test`` optionally marks the rows of a dataset's official test split
    (``(N,)`` bool), which :func:`~bbdefense.data.make_splits` keeps for the test set.
    """

    name: str
    x: Tensor
    y: Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    official_test: Tensor | None = None
    info: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x.dim() != 4:
            raise DataError(f"{self.name}: images must be (N, C, H, W), got shape {tuple(self.x.shape)}")
        if self.x.shape[0] != self.y.shape[0]:
            raise DataError(f"{self.name}: {self.x.shape[0]} images but {self.y.shape[0]} labels")
        if self.x.dtype != torch.float32:
            raise DataError(f"{self.name}: images must be float32, got {self.x.dtype}")
        self.y = self.y.long()
        if len(self.x) and (float(self.x.min()) < 0 or float(self.x.max()) > 1):
            raise DataError(f"{self.name}: images must be in [0, 1]")
        if len(self.y) and (int(self.y.min()) < 0 or int(self.y.max()) >= len(self.classes)):
            raise DataError(f"{self.name}: labels outside [0, {len(self.classes)})")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x.shape[1:]  # x is (N, C, H, W), checked in __post_init__
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, idx: Tensor, name: str | None = None) -> ImageDataset:
        """The rows ``idx`` as a new dataset (copies)."""
        off = None if self.official_test is None else self.official_test[idx]
        return ImageDataset(name or self.name, self.x[idx].clone(), self.y[idx].clone(), list(self.classes),
                            self.mean, self.std, off, dict(self.info))


Loader = Callable[[Path | None], ImageDataset]
DATASETS: Registry[Loader] = Registry("dataset")


def channel_stats(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``(N, C, H, W)`` images."""
    m = x.mean(dim=(0, 2, 3))
    s = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(float(v), 6) for v in m), tuple(round(float(v), 6) for v in s)
