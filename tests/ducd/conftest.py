"""DUCD tests run single-threaded: on a contended 2-core machine torch with 2 threads was measured
13x slower than with 1 on LeNet training (docs/ducd.md); the setting is restored afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
