"""One way for tests to get a checkpoint fast: an untrained SmallCNN saved with its metadata (no training)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def save_untrained_smallcnn(path: Path, *, dataset: str = "mnist5k", image_size: int = 28,
                            mean: tuple[float, ...] = (0.1307,), std: tuple[float, ...] = (0.3081,),
                            arch: str = "smallcnn", **meta_fields: Any) -> Path:
    """Save a seeded, untrained SmallCNN (or another zoo ``arch``; 10 classes, 1 channel) as checkpoint ``path``; extra
    ``meta_fields`` (e.g. ``train={"split_seed": 3}``) go into its :class:`CheckpointMeta`. The global
    RNG is left untouched. Returns ``path``."""
    from bbdefense.models import CheckpointMeta, save_checkpoint
    from bbdefense.models.zoo import build_model

    kw = {"num_classes": 10, "in_channels": 1, "image_size": image_size, "mean": list(mean), "std": list(std)}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = build_model(arch, **kw)
    meta = CheckpointMeta(arch=arch, arch_kwargs=kw, dataset=dataset, num_classes=10,
                          input_shape=[1, image_size, image_size], mean=list(mean), std=list(std), **meta_fields)
    save_checkpoint(path, module, meta)
    return path
