"""Attack tests run single-threaded (tests/conftest.py: one_thread): tiny tensors run fastest so."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _single_threaded(one_thread: None) -> None:
    """Every test in this folder runs on one thread (tests/conftest.py: one_thread)."""
