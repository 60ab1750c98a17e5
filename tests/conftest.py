"""Shared fixtures: tiny models with known answers, embedded data, CPU generators."""

from __future__ import annotations

import pytest
import torch
from torch import nn

torch.set_num_threads(2)


class LinearImageModel(nn.Module):
    """``logits = W flatten(x) + b``: a linear classifier with known decision boundaries."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, input_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.input_shape = input_shape
        self.linear = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(w)
            self.linear.bias.copy_(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


@pytest.fixture
def linear_model() -> LinearImageModel:
    g = torch.Generator().manual_seed(0)
    shape = (1, 8, 8)
    w = torch.randn(10, 64, generator=g)
    b = torch.randn(10, generator=g)
    return LinearImageModel(w, b, shape)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def mnist5k():
    from bbdefense.data import load_dataset

    return load_dataset("mnist5k")


@pytest.fixture(scope="session")
def mnist_splits(mnist5k):
    from bbdefense.data import make_splits

    return make_splits(mnist5k, seed=0)


@pytest.fixture(scope="session")
def trained_smallcnn(tmp_path_factory):
    """A SmallCNN trained for one epoch on the MNIST-5k owner split (session-cached checkpoint)."""
    from bbdefense.training import TrainConfig, train_target

    out = tmp_path_factory.mktemp("target") / "smallcnn"
    path, meta = train_target("smallcnn", "mnist5k", out, TrainConfig(epochs=1, seed=0))
    return path, meta
