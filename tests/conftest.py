"""Shared fixtures: tiny models with known answers, embedded data, CPU generators."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from linear_helpers import Linear

torch.set_num_threads(2)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run the test on one torch thread and restore the setting after: tiny models run fastest so, and on a
    contended 2-core machine torch with 2 threads was measured 13x slower than with 1 on LeNet training
    (docs/ducd.md). A folder opts in with an autouse fixture that requests it (tests/attacks, certified, ducd)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class LinearImageModel(Linear):
    """``logits = W flatten(x) + b`` (:class:`linear_helpers.Linear`) that also knows its input shape."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, input_shape: tuple[int, int, int]) -> None:
        super().__init__(w, b)
        self.input_shape = input_shape


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
