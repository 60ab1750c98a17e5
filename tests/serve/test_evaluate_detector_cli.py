"""``bbdefense evaluate-detector`` end to end on a tiny 8x8 model (digits), and ``serve-audit``'s
detections per key; bad options are refused before any work."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from bbdefense.cli import main
from bbdefense.defenses.stateful import Blacklight
from bbdefense.evaluation.detector import benign_stream, false_positives, jpeg_like, pool_false_positives
from bbdefense.serve import create_app

from .serve_helpers import BOB, KEYS


def test_evaluate_detector_writes_the_tables(tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "det.json"
    cfg.write_text(json.dumps({"window": 8, "top_k": 20, "threshold": 10}))
    out = tmp_path / "run"
    assert main(["evaluate-detector", "--model", str(tiny_ckpt), "--dataset", "digits", "--detector-config", str(cfg),
                 "--attacks", "square", "--modes", "plain,oars,sybil", "-n", "2", "--max-queries", "40",
                 "--accounts", "2", "--benign", "60", "--benign-clients", "2", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "query attacks through the served API" in text and "benign false positives" in text
    assert "(2 clients x 60)" in text and "  120  " in text  # two benign clients pooled per stream
    rows = [json.loads(line) for line in (out / "rows" / "detector.jsonl").read_text().splitlines()]
    assert {(r["attack"], r["mode"]) for r in rows} == {("square", m) for m in ("plain", "oars", "sybil")}
    assert len(rows) == 6 and (out / "report.md").is_file()


def test_bad_options_are_refused(tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["evaluate-detector", "--model", str(tiny_ckpt), "--modes", "plain,crazy", "--out", str(out)]) == 2
    assert "crazy" in capsys.readouterr().err and not out.exists()
    assert main(["evaluate-detector", "--model", str(tiny_ckpt), "--detector", "nope", "--out", str(out)]) == 2
    assert main(["serve", "--model", str(tiny_ckpt), "--detector", "nope", "--db", str(tmp_path / "s.db")]) == 2
    assert "nope" in capsys.readouterr().err and not (tmp_path / "s.db").exists()


def test_serve_audit_lists_detections(tiny_bb, tmp_path: Path, capsys) -> None:
    from fastapi.testclient import TestClient

    db = tmp_path / "state.sqlite3"
    app = create_app(tiny_bb, keys=KEYS, db_path=db, synchronous="NORMAL", on_detect="ban",
                     detector=Blacklight(db_path=db, window=8, top_k=20, threshold=10))
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with TestClient(app) as c:
        c.post("/v1/predict", json={"inputs": x.tolist()}, headers=BOB)
        x[0, 0, 0, 0] = 1 - x[0, 0, 0, 0]
        assert c.post("/v1/predict", json={"inputs": x.tolist()}, headers=BOB).status_code == 403
    app.state.store.close()
    assert main(["serve-audit", "--db", str(db)]) == 0
    text = capsys.readouterr().out
    assert "stateful detections" in text and "bob" in text and "flagged" in text


def test_benign_streams_and_jpeg_like() -> None:
    x = torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    j = jpeg_like(x)
    assert j.shape == x.shape and 0 < float((j - x).abs().mean()) < 0.1 and float(j.min()) >= 0
    s, kinds = benign_stream(x, 200, seed=1, p_augment=0.5)
    assert s.shape == (200, 1, 28, 28) and {"none", "flip", "crop", "brightness", "jpeg"} <= set(kinds)
    again, _ = benign_stream(x, 200, seed=1, p_augment=0.5)
    assert torch.equal(s, again)  # seeded
    fp = false_positives(Blacklight(), s[:50], kinds[:50])
    assert fp["n"] == 50 and fp["per_10k_hi"] > fp["per_10k"] >= 0
    other = false_positives(Blacklight(), s[50:80], kinds[50:80])
    pooled = pool_false_positives([fp, other])  # independent clients: counts add, the bound tightens
    assert pooled["n"] == 80 and pooled["flagged"] == fp["flagged"] + other["flagged"]
    assert sum(v["n"] for v in pooled["by_kind"].values()) == 80
    if pooled["flagged"] == 0:
        assert pooled["per_10k_hi"] < fp["per_10k_hi"]
