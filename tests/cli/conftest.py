"""Fixtures of the CLI tests: one model in every kind ``--model`` accepts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from model_kind_helpers import serve_in_thread, write_kinds


@pytest.fixture(scope="session")
def model_kinds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """kind -> spec of the same weights: checkpoint, onnx, torchscript, factory and url (a server of the
    checkpoint in this process)."""
    folder = tmp_path_factory.mktemp("kinds")
    kinds = write_kinds(folder)
    with serve_in_thread(kinds["checkpoint"], folder / "state.sqlite3") as url:
        yield {**kinds, "url": url}
