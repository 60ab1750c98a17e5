"""`bbdefense distill` against a real served model (uvicorn in a subprocess): the server's `used` moves by
exactly the transfer-set budget plus the declared evaluation budget, the report says what was charged, and a
plan the key cannot pay for is refused before any query (issue 14 item 3)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bbdefense.certified.ducd import build_surrogate
from bbdefense.cli import main
from bbdefense.models import CheckpointMeta, save_checkpoint
from bbdefense.serve import HttpBlackBox

from .serve_helpers import Server, free_port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, mnist5k) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("remote_distill")
    m = build_surrogate("lenet", num_classes=10, input_shape=(1, 28, 28), mean=mnist5k.mean, std=mnist5k.std, seed=3)
    ck = tmp / "target"
    save_checkpoint(ck, m, CheckpointMeta(arch="lenet", arch_kwargs={"num_classes": 10, "in_channels": 1,
                                                                      "image_size": 28, "mean": list(mnist5k.mean),
                                                                      "std": list(mnist5k.std)},
                                          dataset="mnist5k", num_classes=10, input_shape=[1, 28, 28]))
    keys = tmp / "keys.json"
    keys.write_text(json.dumps({"keys": [{"name": "big", "key": "big-secret", "budget": 5000},
                                         {"name": "small", "key": "small-secret", "budget": 1000}]}))
    srv = Server(["--model", str(ck), "--keys", str(keys), "--db", str(tmp / "state.sqlite3"), "--output", "logits"],
                 free_port()).start()
    try:
        yield srv
    finally:
        srv.stop()


def _used(srv: Server, key: str) -> int:
    return int(HttpBlackBox(srv.url, key).usage()["used"])


def _distill(srv: Server, key: str, out: Path, *extra: str) -> int:
    return main(["distill", "--target", srv.url, "--api-key", key, "--surrogate", "lenet", "--epochs", "1",
                 "--out", str(out), "--no-progress", *extra])


def test_remote_distill_charges_budget_only_and_says_so(served: Server, tmp_path: Path, capsys) -> None:
    before = _used(served, "big-secret")
    assert _distill(served, "big-secret", tmp_path / "a", "--budget", "300") == 0
    assert _used(served, "big-secret") - before == 300  # no hidden evaluation queries
    text = capsys.readouterr().out
    assert "charged on the target this run: 300 = 300 transfer-set + 0 evaluation" in text
    assert "target not measured" in text and "moved by 300" in text
    rec = json.loads((tmp_path / "a" / "record.json").read_text())
    assert rec["metrics"]["distill.charged"] == 300 and rec["metrics"]["distill.server_used_delta"] == 300
    assert rec["metrics"]["distill.target_accuracy"] is None and rec["metrics"]["distill.n_target_eval"] == 0
    tab = rec["tables"][0]
    assert tab["rows"][0][-1] == "300 (300 + 0)" and "not measured" in tab["caption"]


def test_remote_distill_with_declared_eval_budget(served: Server, tmp_path: Path, capsys) -> None:
    before = _used(served, "big-secret")
    assert _distill(served, "big-secret", tmp_path / "b", "--budget", "300", "--eval-budget", "100") == 0
    assert _used(served, "big-secret") - before == 400
    text = capsys.readouterr().out
    assert "400 = 300 transfer-set + 100 evaluation" in text and "on 100 images" in text
    rec = json.loads((tmp_path / "b" / "record.json").read_text())
    assert rec["metrics"]["distill.n_target_eval"] == 100 and rec["metrics"]["distill.audit_charged"] is True
    assert rec["tables"][0]["rows"][0][-2:] == [100, "400 (300 + 100)"]
    assert "charged by the remote API" in rec["tables"][0]["caption"]


def test_remote_plan_over_the_key_budget_is_refused_before_any_query(served: Server, tmp_path: Path,
                                                                    capsys) -> None:
    before = _used(served, "small-secret")
    left = 1000 - before
    rc = _distill(served, "small-secret", tmp_path / "c", "--budget", str(left - 50), "--eval-budget", "100")
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"would be charged {left + 50} images" in err and f"has {left} of 1000 left" in err
    assert _used(served, "small-secret") == before  # nothing was sent
    assert not (tmp_path / "c" / "record.json").exists()
    # the same plan without the evaluation fits, and spends exactly its budget
    assert _distill(served, "small-secret", tmp_path / "d", "--budget", str(left - 50)) == 0
    assert _used(served, "small-secret") == before + left - 50
