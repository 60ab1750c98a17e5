"""Tiny settings for the certified-defense estimators: 8x8 digits, linear targets trained in a second,
a 28x28 MNIST-5k slice for the AE variants. Single-threaded (tests/conftest.py: one_thread)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bbdefense.data import ImageDataset, load_dataset, make_splits
from bbdefense.data.splits import Splits


@pytest.fixture(autouse=True)
def _single_threaded(one_thread: None) -> None:
    """Every test in this folder runs on one thread (tests/conftest.py: one_thread)."""


def train_linear(data: ImageDataset, *, seed: int, steps: int = 60) -> nn.Module:
    """A linear classifier ``(N, C, H, W) -> (N, K)`` fitted by full-batch Adam (seeded, global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        m = nn.Sequential(nn.Flatten(), nn.Linear(data.x[0].numel(), data.num_classes))
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(m(data.x), data.y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


@pytest.fixture(scope="session")
def digit_splits() -> Splits:
    return make_splits(load_dataset("digits"), seed=0)


@pytest.fixture(scope="session")
def digit_target(digit_splits: Splits) -> nn.Module:
    """The owner's model: linear on 8x8 digits, trained on the owner split (~95% test accuracy)."""
    return train_linear(digit_splits.owner_train, seed=0)


@pytest.fixture(scope="session")
def digit_other(digit_splits: Splits) -> nn.Module:
    """A second, unseen model (another seed, the defender never trains against it)."""
    return train_linear(digit_splits.owner_train, seed=1, steps=40)


@pytest.fixture(scope="session")
def mnist_slice() -> ImageDataset:
    """20 class-interleaved MNIST-5k images (28x28, for the d_z = 192 autoencoder)."""
    return make_splits(load_dataset("mnist5k"), seed=0).defender.subset(torch.arange(20))


@pytest.fixture(scope="session")
def mnist_target(mnist_slice: ImageDataset) -> nn.Module:
    return train_linear(mnist_slice, seed=0, steps=30)
