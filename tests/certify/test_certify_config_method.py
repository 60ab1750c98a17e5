"""The config runner's certify section takes the method (sequential / randomized Cohen) and passes it through."""

from __future__ import annotations

from pathlib import Path

import pytest

from bbdefense.errors import ConfigError
from bbdefense.experiments.config import parse_config
from bbdefense.experiments.runner import run_experiment
from bbdefense.records import read_rows

CFG = {
    "name": "seq", "seed": 0, "data": {"dataset": "digits", "n": 3},
    "target": {"arch": "smallcnn", "train": {"epochs": 1, "batch_size": 64}},
    "certify": [{"noise": "gaussian", "sigma": 0.25, "n0": 8, "norms": ["l2"], "batch_size": 40,
                 "method": "sequential", "radii": [0.1], "max_n": 60}],
}


def test_config_runner_passes_the_method_through(tmp_path: Path) -> None:
    cfg = parse_config(CFG)
    assert cfg.certify[0].method == "sequential" and cfg.certify[0].max_n == 60
    run_experiment(cfg, tmp_path / "r")
    rows = list(read_rows(tmp_path / "r" / "rows" / "certify__gaussian-0.25.jsonl"))
    assert len(rows) == 3 and all(r["method"] == "sequential" and r["samples"] <= 68 for r in rows)
    assert all(set(r["decisions"]) == {"0", "0.1"} for r in rows)
    with pytest.raises(ConfigError, match="method"):
        parse_config({**CFG, "certify": [{"method": "bayes"}]})
