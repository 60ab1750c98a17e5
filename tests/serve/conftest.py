"""Fixtures for the serving tests: a tiny checkpoint, a served black box, an app factory."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from bbdefense.models import BlackBox, CheckpointMeta, build_model, save_checkpoint

from .serve_helpers import KEYS, SHAPE

with warnings.catch_warnings():  # starlette's TestClient warns (UserWarning) that it prefers httpx2
    warnings.simplefilter("ignore", UserWarning)
    import fastapi.testclient  # noqa: F401  (imported once here, under the filter, so the tests see no warning)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained SmallCNN on 8x8 images (seeded, input-sensitive), saved as a checkpoint."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = build_model("smallcnn", num_classes=10, in_channels=1, image_size=8)
    with torch.no_grad():  # zero biases and a larger head so that the outputs depend on the image
        for name, prm in module.named_parameters():
            if name.endswith("bias"):
                prm.zero_()
        module.head.weight.mul_(30)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_checkpoint(path, module, CheckpointMeta(arch="smallcnn", arch_kwargs={"num_classes": 10, "in_channels": 1,
                                                                              "image_size": 8},
                                                 num_classes=10, input_shape=list(SHAPE), seed=0))
    return path


@pytest.fixture
def tiny_bb(linear_model: nn.Module) -> BlackBox:
    return BlackBox.from_module(linear_model, input_shape=SHAPE, output="probs", name="linear")


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``make_client(bb, **create_app_kw) -> TestClient`` with the test keys and a temporary state file."""
    from fastapi.testclient import TestClient

    from bbdefense.serve import create_app

    clients: list[Any] = []

    def make(bb: BlackBox, **kw: Any) -> Any:
        kw.setdefault("keys", KEYS)
        kw.setdefault("db_path", tmp_path / "state.sqlite3")
        kw.setdefault("synchronous", "NORMAL")
        c = TestClient(create_app(bb, **kw))
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.app.state.store.close()
        c.close()


