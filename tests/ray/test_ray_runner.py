"""``bbdefense run --ray``: the config runner's attack jobs (Ray tasks that return their rows) and its
certification (sharded over Ray actors) give the rows of a run in one process; the driver alone writes
the run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bbdefense.experiments.config import parse_config
from bbdefense.experiments.runner import run_experiment
from bbdefense.records import read_rows


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> str:
    from bbdefense.training import TrainConfig, train_target

    path, _ = train_target("smallcnn", "digits", tmp_path_factory.mktemp("t") / "smallcnn",
                           TrainConfig(epochs=2, batch_size=64, seed=0))
    return str(path)


def _cfg(target: str) -> Any:
    return parse_config({
        "name": "tiny-ray", "seed": 0, "data": {"dataset": "digits", "n": 6},
        "target": {"checkpoint": target},
        "defenses": [{"name": "rnd", "params": {"nu": 0.05}}],
        "attacks": [{"name": "square", "budgets": [5, 20], "params": {"norm": "linf", "eps": 0.3, "p_init": 0.8},
                     "criterion": "single"}],
        "certify": [{"noise": "gaussian", "sigma": 0.25, "n0": 8, "n": 32, "norms": ["l2"], "batch_size": 40}]})


def _rows(path: Path) -> list[dict[str, Any]]:
    rows = ({k: v for k, v in r.items() if k != "seconds"} for r in read_rows(path))
    return sorted(rows, key=lambda r: str(r.get("idx", r.get("model"))))  # defenses.jsonl is keyed by model


def test_a_config_run_on_ray_writes_the_rows_of_a_local_run(ray_cluster: dict[str, Any], target: str,
                                                           tmp_path: Path) -> None:
    cfg = _cfg(target)
    run_experiment(cfg, tmp_path / "one")
    run_experiment(cfg, tmp_path / "ray", use_ray=True)
    files = sorted(p.name for p in (tmp_path / "one" / "rows").glob("*.jsonl"))
    assert len([f for f in files if f.startswith("attack__") and "_batches" not in f]) == 4
    assert any(f.startswith("certify__") for f in files)
    assert files == sorted(p.name for p in (tmp_path / "ray" / "rows").glob("*.jsonl"))
    for f in files:
        assert _rows(tmp_path / "one" / "rows" / f) == _rows(tmp_path / "ray" / "rows" / f), f
    m1, m2 = (json.loads((tmp_path / d / "record.json").read_text())["metrics"] for d in ("one", "ray"))
    assert {k: v for k, v in m1.items() if k != "seconds"} == {k: v for k, v in m2.items() if k != "seconds"}
    # resumed on Ray with every row on disk: nothing recomputed, nothing duplicated
    before = {f: (tmp_path / "ray" / "rows" / f).read_text() for f in files}
    run_experiment(cfg, tmp_path / "ray", use_ray=True)
    assert before == {f: (tmp_path / "ray" / "rows" / f).read_text() for f in files}


def test_the_privacy_study_trains_its_models_as_ray_tasks(ray_cluster: dict[str, Any], target: str,
                                                          tmp_path: Path) -> None:
    cfg = parse_config({"name": "priv-ray", "data": {"dataset": "digits", "n": 6}, "target": {"checkpoint": target},
                        "privacy": {"n_members": 20, "sources": ["disjoint"], "distill_budget": 200,
                                    "distill_epochs": 1, "n_smooth": 4, "overfit_n": 20, "overfit_epochs": 2,
                                    "shadow": True, "shadow_epochs": 1, "n_boot": 50}})
    run_experiment(cfg, tmp_path / "one")
    run_experiment(cfg, tmp_path / "ray", use_ray=True)
    cached = sorted(p.name for p in (tmp_path / "ray" / "privacy_cache").glob("*.safetensors"))
    assert len(cached) == 4  # surrogate, shadow, overfit control, its shadow: written by the driver
    m1, m2 = (json.loads((tmp_path / d / "record.json").read_text())["metrics"] for d in ("one", "ray"))
    auc1 = {k: v for k, v in m1.items() if k.startswith("privacy.")}
    auc2 = {k: v for k, v in m2.items() if k.startswith("privacy.")}
    assert auc1.keys() == auc2.keys() and len(auc1) >= 8
    assert auc1 == pytest.approx(auc2, abs=0.02)  # same seeds; a worker's single torch thread may round apart
