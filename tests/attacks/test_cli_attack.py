"""``bbdefense attack`` in-process: rows, record, report, resume, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bbdefense.cli import main
from bbdefense.records import read_rows
from checkpoint_helpers import save_untrained_smallcnn


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained SmallCNN on the 8x8 digits (fast; about 10% of images are 'correct')."""
    return save_untrained_smallcnn(tmp_path_factory.mktemp("ckpt") / "tiny", dataset="digits", image_size=8,
                                   mean=(0.5,), std=(0.5,))


def test_cli_attack_writes_rows_record_and_report(digits_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["attack", "--model", str(digits_ckpt), "--attack", "square", "--eps", "8/255", "--max-queries", "30",
            "-n", "6", "--batch-size", "4", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    rows = list(read_rows(out / "rows" / "attack.jsonl"))
    assert len(rows) == 6 and len({r["idx"] for r in rows}) == 6
    assert all(r["queries"] <= 30 for r in rows)
    rec = json.loads((out / "record.json").read_text())
    assert rec["status"] == "complete" and rec["config"]["params"]["eps"] == pytest.approx(8 / 255)
    m = rec["metrics"]
    assert m["total_queries"] == sum(r["queries"] for r in rows)
    assert m["robust_accuracy"] == pytest.approx(1 - sum(r["success"] for r in rows) / 6)
    assert any(t["title"] == "Robust accuracy vs queries" for t in rec["tables"])
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    # resume: nothing is attacked again, no row duplicated
    assert main(args) == 0
    assert len(list(read_rows(out / "rows" / "attack.jsonl"))) == 6


def test_cli_attack_resumes_an_interrupted_run(digits_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["attack", "--model", str(digits_ckpt), "--attack", "simba", "--eps", "0.2", "--max-queries", "20",
            "-n", "6", "--batch-size", "3", "--out", str(out), "--no-progress", "--param", "basis=pixel"]
    assert main(args) == 0
    full = list(read_rows(out / "rows" / "attack.jsonl"))
    path = out / "rows" / "attack.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:4]) + lines[4][:7])  # killed mid-row in the second batch
    assert main(args) == 0
    again = list(read_rows(path))
    assert sorted(again, key=lambda r: r["idx"]) == sorted(full, key=lambda r: r["idx"])


def test_cli_attack_errors_are_one_line(digits_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["attack", "--model", str(digits_ckpt), "--out", str(tmp_path / "x"), "--no-progress"]
    assert main([*base, "--attack", "nope"]) == 2
    assert "unknown attack 'nope'" in capsys.readouterr().err
    assert main([*base, "--eps", "-1"]) == 2
    assert "--eps must be > 0, got '-1'" in capsys.readouterr().err
    assert main([*base, "--param", "bogus=1"]) == 2
    assert "attack 'square' has no parameter 'bogus'" in capsys.readouterr().err


def test_cli_targeted_hsja_starts_from_target_class_images(digits_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["attack", "--model", str(digits_ckpt), "--attack", "hsja", "--norm", "l2", "--eps", "2",
            "--max-queries", "60", "-n", "3", "--targeted", "--output", "label", "--out", str(out), "--no-progress",
            "--param", "num_iterations=1", "--param", "init_tries=5"]
    assert main(args) == 0
    rows = list(read_rows(out / "rows" / "attack.jsonl"))
    assert len(rows) == 3 and all("target" in r and r["target"] != r["label"] for r in rows)
    assert all(1 <= r["queries"] <= 60 for r in rows)  # at least the charged check of the start
    assert json.loads((out / "record.json").read_text())["config"]["targeted"] is True


def test_cli_attack_budget_is_a_hard_total(digits_ckpt: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """``--budget`` bounds the run's queries in all (as on every command) and ``--max-queries`` each image: a
    run out of budget stops with one clear line and exit 2, keeps the rows it wrote, and resumes under a larger one
    (the total budget is not part of the run's config)."""
    out = tmp_path / "run"
    args = ["attack", "--model", str(digits_ckpt), "--attack", "square", "--eps", "0.05", "--max-queries", "30",
            "-n", "6", "--batch-size", "2", "--out", str(out), "--no-progress"]
    assert main([*args, "--budget", "70"]) == 2
    err = capsys.readouterr().err
    assert "query budget exceeded" in err and len(err.strip().splitlines()) == 1
    kept = list(read_rows(out / "rows" / "attack.jsonl"))
    assert 1 <= len(kept) < 6 and sum(r["queries"] for r in kept) <= 70
    assert main([*args, "--budget", "1000"]) == 0
    rows = list(read_rows(out / "rows" / "attack.jsonl"))
    assert len(rows) == 6 and rows[:len(kept)] == kept
