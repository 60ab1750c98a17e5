"""The evaluation harness: rows per attack and budget, EOT charged m per evaluation, tables in the
UniG/RFD layout, streamed rows that resume."""

from __future__ import annotations

import torch

from bbdefense.defenses import RandomNoiseDefense
from bbdefense.evaluation.owner import EvalConfig, evaluate_defenses
from bbdefense.records import RunDir, read_rows


def test_evaluate_streams_rows_and_builds_tables(linear_model, tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 8, 8, generator=g)
    with torch.no_grad():
        y = linear_model(x).argmax(1)
    rnd = RandomNoiseDefense(linear_model, nu=0.05, seed=0)
    cfg = EvalConfig(attacks=("square",), budgets=(20, 40), decision_attacks=(), eot=("square",), eot_m=4,
                     eps=0.3, clean_passes=2, criterion="single")
    run = RunDir(tmp_path / "run", kind="test", config={"t": 1})
    out = evaluate_defenses({"undefended": linear_model, "rnd": rnd}, linear_model, x, y, cfg, run=run)
    keys = [r["key"] for r in out["rows"]]
    assert keys == ["undefended|square|20", "undefended|square|40", "rnd|square|20", "rnd|square|40",
                    "rnd|eot4-square|40"]
    assert out["clean"]["undefended"]["clean_accuracy"] == 1.0 and out["clean"]["undefended"]["logit_difference"] == 0
    assert out["clean"]["rnd"]["logit_difference"] > 0
    for r in out["rows"]:
        assert 0 <= r["robust_accuracy"] <= 1 and r["queries"] <= r["budget"] * 6
    eot = out["rows"][-1]
    assert eot["queries"] % 4 == 0  # every EOT evaluation is charged m = 4 queries
    # a linear model at eps 0.3 falls to Square: the undefended model is fully broken at 40 queries
    assert out["rows"][1]["robust_accuracy"] <= out["rows"][0]["robust_accuracy"]
    rows = list(read_rows(tmp_path / "run" / "rows" / "owner_eval.jsonl"))
    assert len(rows) == 2 + 5
    t = out["tables"][0]
    assert t["columns"][:3] == ["defense", "clean acc", "logit diff"] and "queries spent" in t["columns"]
    # resume: nothing is re-run, the same rows come back
    run2 = RunDir(tmp_path / "run", kind="test", config={"t": 1})
    again = evaluate_defenses({"undefended": linear_model, "rnd": rnd}, linear_model, x, y, cfg, run=run2)
    assert [r["robust_accuracy"] for r in again["rows"]] == [r["robust_accuracy"] for r in out["rows"]]
