"""DUCD tests run single-threaded (tests/conftest.py: one_thread, restored afterwards)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _single_threaded(one_thread: None) -> None:
    """Every test in this folder runs on one thread (tests/conftest.py: one_thread)."""
