"""Serving inputs refused before work: the request schema's minimum batch, the open API's budget, the
state file (issue 14)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bbdefense.errors import ConfigError, InputError
from bbdefense.models import BlackBox
from bbdefense.serve.app import PredictRequest
from bbdefense.serve.store import KeyStore, check_state_file

from .serve_helpers import ALICE


def test_the_schema_refuses_an_empty_inputs_list(make_client: Any, tiny_bb: BlackBox) -> None:
    spec = PredictRequest.model_json_schema()
    lists = [b for b in spec["properties"]["inputs"]["anyOf"] if b.get("type") == "array"]
    assert lists and lists[0]["minItems"] == 1
    c = make_client(tiny_bb)
    served = c.get("/openapi.json").json()["components"]["schemas"]["PredictRequest"]
    served_lists = [b for b in served["properties"]["inputs"]["anyOf"] if b.get("type") == "array"]
    assert served_lists[0]["minItems"] == 1
    r = c.post("/v1/predict", json={"inputs": []}, headers=ALICE)
    assert r.status_code == 422 and r.json()["code"] == "invalid_images"
    assert "empty batch" in r.json()["detail"]
    r = c.post("/v1/predict", json={"inputs": [], "extra": 1}, headers=ALICE)
    assert r.status_code == 422 and r.json()["code"] == "malformed" and "extra" in r.json()["detail"]


def test_open_api_budget_must_be_non_negative() -> None:
    with pytest.raises(InputError, match="must be an integer >= 0"):
        KeyStore(":memory:", anonymous_budget=-1)


def test_state_file_checks(tmp_path: Path) -> None:
    check_state_file(tmp_path / "new.sqlite3")  # a new file: fine, nothing written
    assert not (tmp_path / "new.sqlite3").exists()
    with pytest.raises(ConfigError, match="is a folder"):
        check_state_file(tmp_path)
    (tmp_path / "text.sqlite3").write_text("hello, not a database" * 10)
    with pytest.raises(ConfigError, match="not a SQLite state file"):
        check_state_file(tmp_path / "text.sqlite3")
    with pytest.raises(ConfigError, match="cannot open the server state file"):
        KeyStore(tmp_path / "text.sqlite3")
    st = KeyStore(tmp_path / "ok.sqlite3")
    st.close()
    check_state_file(tmp_path / "ok.sqlite3")
