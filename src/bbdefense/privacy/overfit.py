"""The deliberately overfit target: the positive control of every membership-inference evaluation.

A zoo classifier trained without regularisation on a **small** subset of the owner's training split
for many epochs: it memorises its members (training accuracy 1, loss near 0) while generalising
worse, the regime where Shokri et al. 2017 and Yeom et al. 2018 show membership leaks most. If an
attack does not beat 0.5 AUC here, the attack (not the defense) is broken.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data import ImageDataset
from ..errors import InputError
from ..models.zoo import build_model
from ..training import TrainConfig, train_classifier
from ..utils import seeded_init


def overfit_subset(data: ImageDataset, n_train: int, *, seed: int = 0) -> ImageDataset:
    """A seeded random subset of ``n_train`` examples of ``data`` (the overfit target's members)."""
    if not 1 <= n_train <= len(data):
        raise InputError(f"n_train must be in [1, {len(data)}], got {n_train}")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data), generator=g)[:n_train].sort().values
    return data.subset(idx, f"{data.name}:overfit{n_train}")


def train_overfit_target(arch: str, data: ImageDataset, *, n_train: int = 200, epochs: int = 60,
                         lr: float = 1e-3, seed: int = 0) -> tuple[nn.Module, ImageDataset]:
    """Train ``arch`` on ``n_train`` examples of ``data`` for ``epochs`` epochs (Adam, no weight decay).

    Returns ``(module in eval mode, member set)``. Parameter init uses a forked, seeded global RNG
    (the caller's RNG stream is untouched); shuffling uses the trainer's own generator.
    """
    if epochs < 1:
        raise InputError(f"epochs must be >= 1, got {epochs}")
    members = overfit_subset(data, n_train, seed=seed)
    c, h = data.x.shape[1], data.x.shape[2]
    with seeded_init(seed):
        module = build_model(arch, num_classes=len(data.classes), in_channels=c, image_size=h,
                             mean=list(data.mean), std=list(data.std))
    train_classifier(module, members, TrainConfig(mode="plain", epochs=epochs, batch_size=32, lr=lr, seed=seed))
    return module.eval(), members


__all__ = ["overfit_subset", "train_overfit_target"]
