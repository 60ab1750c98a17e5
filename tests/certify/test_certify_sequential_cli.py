"""`bbdefense certify --method sequential` (rows with samples and decisions, the samples table, resume) and
`bbdefense certify --defense DIR` (a saved ZO-AE-DS defense certified by the same engine as `defend --load`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bbdefense.cli import main
from bbdefense.records import read_rows
from checkpoint_helpers import save_untrained_smallcnn


@pytest.fixture(scope="module")
def lenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_untrained_smallcnn(tmp_path_factory.mktemp("m") / "lenet", arch="lenet", mean=(0.13,), std=(0.31,),
                                   train={"split_seed": 0})


def test_cli_sequential_rows_carry_samples_and_decisions(lenet: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "seq"
    args = ["certify", "--model", str(lenet), "--sigma", "0.5", "--method", "sequential", "--radius", "0.25",
            "--radius", "0.5", "--max-n", "300", "--n0", "10", "--alpha", "0.01", "--out", str(run), "--no-progress",
            "--norm", "l2"]
    assert main([*args, "-n", "3"]) == 0
    rows = list(read_rows(run / "rows" / "certify.jsonl"))
    assert [r["idx"] for r in rows] == [0, 1, 2]
    for r in rows:
        assert r["method"] == "sequential" and set(r["decisions"]) == {"0", "0.25", "0.5"}
        assert 10 <= r["samples"] <= 310 and r["queries"] == r["samples"]
        assert r["abstain"] == (r["decisions"]["0"] != "robust")
    rec = json.loads((run / "record.json").read_text())
    assert rec["config"]["method"] == "sequential" and rec["config"]["radii"] == [0.25, 0.5]
    assert rec["metrics"]["queries"] == sum(r["samples"] for r in rows)
    assert any(t["title"] == "Sequential decisions per radius" for t in rec["tables"])
    assert main([*args, "-n", "4"]) == 0  # resume: one new image
    assert len(list(read_rows(run / "rows" / "certify.jsonl"))) == 4
    capsys.readouterr()
    assert main([*args, "-n", "1", "--method", "bayes"]) == 2
    assert "--method" in capsys.readouterr().err


def test_cli_certify_a_saved_defense(lenet: Path, tmp_path: Path) -> None:
    common = ["--model", str(lenet), "--n-test", "2", "--n0", "4", "--n", "16", "--no-progress"]
    assert main(["defend", "zo-ae-ds", "--variant", "zo-ds", "--q", "2", "--epochs", "1", "--n-train", "10",
                 "--batch-size", "5", "--out", str(tmp_path / "a"), *common]) == 0
    assert main(["certify", "--model", str(lenet), "--defense", str(tmp_path / "a"), "-n", "2", "--n0", "4", "--n",
                 "16", "--norm", "l2", "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    defended = list(read_rows(tmp_path / "a" / "rows" / "certify.jsonl"))
    ours = list(read_rows(tmp_path / "b" / "rows" / "certify.jsonl"))
    # one evaluation layer: the same rows (but the wall time) from `defend` and from `certify --defense`
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in ours] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in defended]
    assert main(["certify", "--model", str(lenet), "--defense", str(tmp_path / "a"), "-n", "2", "--n0", "4",
                 "--method", "sequential", "--radius", "0.1", "--max-n", "50", "--norm", "l2",
                 "--out", str(tmp_path / "c"), "--no-progress"]) == 0
    assert all(r["samples"] <= 54 for r in read_rows(tmp_path / "c" / "rows" / "certify.jsonl"))
