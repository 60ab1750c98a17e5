"""CLI: `bbdefense defend <owner defense>` writes a defense file that `bbdefense evaluate` reads;
errors are one line and exit code 2."""

from __future__ import annotations

import json

import pytest
import torch

from bbdefense.cli import main
from bbdefense.models.checkpoint import CheckpointMeta, save_checkpoint
from bbdefense.models.zoo import build_model


@pytest.fixture
def ckpt(tmp_path):
    kw = {"num_classes": 10, "in_channels": 1, "image_size": 28, "mean": [0.5], "std": [0.5]}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = build_model("lenet", **kw)
    meta = CheckpointMeta(arch="lenet", arch_kwargs=kw, dataset="mnist5k", num_classes=10, input_shape=[1, 28, 28],
                          mean=[0.5], std=[0.5])
    return save_checkpoint(tmp_path / "net", m, meta)


def test_defend_writes_a_file_that_evaluate_uses(ckpt, tmp_path, capsys) -> None:
    f = tmp_path / "rnd.json"
    assert main(["defend", "rnd", "--model", str(ckpt), "--nu", "0.05", "--passes", "2", "--n-test", "100",
                 "--out", str(f), "--no-progress"]) == 0
    rec = json.loads(f.read_text())
    assert rec["defense"] == "rnd" and rec["params"]["nu"] == 0.05 and 0 <= rec["test_clean_accuracy"] <= 1
    assert main(["defend", "unig", "--model", str(ckpt), "--combine", "--passes", "1", "--n-test", "64",
                 "--no-progress"]) == 0
    assert "combine" in capsys.readouterr().out
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(ckpt), "-d", str(f), "-d", "aaa:num_iter=3", "--attacks", "square",
                 "--decision-attacks", "", "--budgets", "4", "--eot", "square", "--eot-m", "2", "--eot-budget", "8",
                 "--n", "3", "--passes", "1", "--n-clean", "64", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "square@4" in text and "eot2-square@8" in text and (out / "report.md").is_file()
    rows = [json.loads(line) for line in (out / "rows" / "owner_eval.jsonl").read_text().splitlines()]
    assert {r["defense"] for r in rows} == {"undefended", "rnd nu=0.05", "aaa{num_iter=3}"}
    eot = next(r for r in rows if r.get("attack") == "eot2-square")
    # --eot-budget gives the EOT attack m x the queries, i.e. as many iterations as the plain one; m = 2 per evaluation
    assert eot["budget"] == 8 and eot["queries"] <= 8 * 3 and eot["queries"] % 2 == 0


def test_cli_errors_are_one_line(ckpt, tmp_path, capsys) -> None:
    assert main(["defend", "rfd", "--model", str(ckpt), "--layers", "nowhere", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown layer 'nowhere'" in err and "Traceback" not in err
    assert main(["evaluate", "--model", str(ckpt), "-d", "bogus", "--out", str(tmp_path / "e"), "--no-progress"]) == 2
    assert "unknown defense 'bogus'" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()  # specs are validated before anything is written


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_defend_budget_bounds_the_measurement(ckpt, capsys) -> None:
    """`defend --budget`: the defended model answers the test measurement (2 passes x 50 + 50 for the logit
    difference = 150 queries) through a counted black box; one query fewer is refused with one line, exit 2."""
    args = ["defend", "rnd", "--model", str(ckpt), "--nu", "0.05", "--passes", "2", "--n-test", "50", "--no-progress"]
    assert main([*args, "--budget", "150"]) == 0
    with_budget = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == with_budget  # same figures through the black box
    assert main([*args, "--budget", "149"]) == 2
    line = _one_error_line(capsys)
    assert "query budget exceeded: 100 of 149 used, a batch of 50 was refused" in line


def test_evaluate_budget_is_a_total_over_the_attack_runs(ckpt, tmp_path, capsys) -> None:
    """`evaluate --budget`: the attack runs of one invocation share the limit; the run that would pass it is
    refused with one line (exit 2) naming what was spent; the rows written before it stay (resumable)."""
    base = ["evaluate", "--model", str(ckpt), "-d", "rnd:nu=0.05", "--attacks", "square", "--decision-attacks", "",
            "--eot", "", "--budgets", "4", "--n", "3", "--passes", "1", "--n-clean", "20", "--no-progress"]
    free = tmp_path / "free"
    assert main([*base, "--out", str(free)]) == 0
    rows = [json.loads(line) for line in (free / "rows" / "owner_eval.jsonl").read_text().splitlines()]
    spent = [r["queries"] for r in rows if r["attack"] == "square"]
    capsys.readouterr()
    capped = tmp_path / "capped"
    assert main([*base, "--out", str(capped), "--budget", str(spent[0])]) == 2
    line = _one_error_line(capsys)
    assert f"the attack runs spent {spent[0]} of {spent[0]}" in line and "square@4 on rnd nu=0.05" in line
    kept = (capped / "rows" / "owner_eval.jsonl").read_text().splitlines()
    assert sum('"attack": "square"' in k for k in kept) == 1
    assert main([*base, "--out", str(capped), "--budget", str(sum(spent))]) == 0  # resumes, spends the rest
