"""Config-driven experiments: validation errors name the key, the runner streams rows, resumes without
recomputing or duplicating, and the report/record hold the tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from bbdefense.cli import main
from bbdefense.errors import ConfigError
from bbdefense.experiments.config import load_config, parse_config
from bbdefense.experiments.runner import run_experiment
from bbdefense.records import read_rows

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "name": "tiny",
    "seed": 0,
    "data": {"dataset": "digits", "n": 6},
    "target": {"arch": "smallcnn", "train": {"epochs": 2, "batch_size": 64}},
    "defenses": [{"name": "rnd", "params": {"nu": 0.05}}],
    "attacks": [{"name": "square", "budgets": [5, 20], "params": {"norm": "linf", "eps": 0.3, "p_init": 0.8},
                 "criterion": "single"},
                {"name": "hsja", "budget": 40, "params": {"norm": "l2", "eps": 2.0, "num_iterations": 1}}],
    "certify": [{"noise": "gaussian", "sigma": 0.25, "n0": 8, "n": 32, "norms": ["l2"], "batch_size": 40}],
}


@pytest.mark.parametrize(("patch", "message"), [
    ({"target": {"arch": "smallcnn", "bogus": 1}}, "target.bogus: unknown key"),
    ({"target": {"arch": "nope"}}, "unknown architecture 'nope'"),
    ({"target": {"arch": "smallcnn", "checkpoint": "x"}}, "exactly one of target.checkpoint or target.arch"),
    ({"attacks": [{"name": "squar"}]}, "attacks.0.name: unknown attack 'squar'"),
    ({"attacks": [{"name": "square", "budget": 0}]}, "attacks.0.budget"),
    ({"attacks": [{"name": "square"}, {"name": "square"}]}, "share the name 'square'"),
    ({"defenses": [{"name": "rnd", "label": "undefended"}]}, "'undefended' is reserved"),
    ({"certify": [{"noise": "gauss"}]}, "unknown noise 'gauss'"),
    ({"privacy": {"n_member": 5}}, "privacy: unknown key 'n_member'"),
    ({"surprise": 1}, "surprise: unknown key"),
    ({"attacks": [{"name": "square", "params": {"epsilon": 0.1}}]}, "attack 'square' has no parameter 'epsilon'"),
    ({"attacks": [{"name": "square", "params": {"max_queries": 9}}]}, "as 'budget'"),
    ({"attacks": [{"name": "square", "budgets": [10, 10]}]}, "distinct positive integers"),
    ({"attacks": [{"name": "square", "budgets": [10]}, {"name": "square", "budget": 10, "label": "square@10"}]},
     "share the name 'square@10'"),
    ({"defenses": [{"name": "rnd", "params": {"sigma": 0.1}}]}, "defense 'rnd' has no parameter 'sigma'"),
    ({"attacks": [{"name": "square", "criterion": "mostly"}]}, "criterion of 'square' must be one of single"),
    ({"attacks": [{"name": "pgd", "criterion": "single"}]}, "attack 'pgd' takes no success criterion"),
    ({"attacks": [{"name": "signflip", "criterion": "twice"}]},
     "criterion of 'signflip' must be one of single, majority, fooled_once, fast_exp"),
])
def test_invalid_configs_name_the_bad_key(patch: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config({**TINY, **patch})


def test_rays_accepts_fast_exp() -> None:
    cfg = parse_config({**TINY, "attacks": [{"name": "rays", "budget": 10, "criterion": "fast_exp"}]})
    assert cfg.attacks[0].criterion == "fast_exp"


def test_load_config_errors_and_shipped_configs_are_valid(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    shipped = sorted((ROOT / "configs").glob("*.yaml"))
    assert shipped
    for p in shipped:
        load_config(p)


def test_runner_streams_rows_resumes_and_reports(tmp_path: Path) -> None:
    cfg = parse_config(TINY)
    out = tmp_path / "run"
    md = run_experiment(cfg, out)
    rec = json.loads((out / "record.json").read_text())
    assert rec["status"] == "complete" and md.is_file() and md.with_suffix(".html").is_file()
    rows_dir = out / "rows"
    names = {p.stem for p in rows_dir.glob("*.jsonl")}
    assert {"attack__undefended__square@5", "attack__rnd__square@20", "attack__undefended__hsja", "attack__rnd__hsja",
            "certify__gaussian-0.25"} <= names
    sq = list(read_rows(rows_dir / "attack__undefended__square@20.jsonl"))
    assert 1 <= len(sq) <= 6 and all(r["queries"] <= 20 for r in sq)
    assert all(r["queries"] <= 5 for r in read_rows(rows_dir / "attack__undefended__square@5.jsonl"))
    cert = list(read_rows(rows_dir / "certify__gaussian-0.25.jsonl"))
    assert len(cert) == 6 and all(r["queries"] == 8 + 32 for r in cert)
    table = next(t for t in rec["tables"] if t["title"] == "Robust accuracy")
    assert {(r[0], r[1]) for r in table["rows"]} == {(m, a) for m in ("undefended", "rnd")
                                                     for a in ("square@5", "square@20", "hsja")}
    for r in table["rows"]:  # robust accuracy in the table = 1 - successes / images of that row file
        rows = list(read_rows(rows_dir / f"attack__{r[0]}__{r[1]}.jsonl"))
        assert r[3] == pytest.approx(1 - sum(x["success"] for x in rows) / len(rows))
    assert "Robust accuracy" in md.read_text() and "Certified accuracy" in md.read_text()
    # the UniG Table 1 columns: clean accuracy (3 passes) and logit difference vs the undefended target
    dfn = {r["model"]: r for r in read_rows(rows_dir / "defenses.jsonl")}
    assert set(dfn) == {"undefended", "rnd"} and dfn["undefended"]["logit_difference"] == 0.0
    assert dfn["rnd"]["randomized"] and dfn["rnd"]["logit_difference"] > 0
    assert len(dfn["rnd"]["clean_accuracy_passes"]) == 3
    assert dfn["undefended"]["clean_accuracy"] == pytest.approx(rec["metrics"]["clean_accuracy.undefended"])
    dtab = next(t for t in rec["tables"] if t["title"].startswith("Defenses: clean accuracy"))
    assert [r[0] for r in dtab["rows"]] == ["undefended", "rnd"]
    checks = {c["name"]: c["passed"] for c in rec["checks"]}
    for r in table["rows"]:  # the sanity check flags robust images whose attack stopped before its budget
        rows = list(read_rows(rows_dir / f"attack__{r[0]}__{r[1]}.jsonl"))
        robust = [x for x in rows if not x["success"]]
        if robust:
            assert checks[f"budget_exhaustion.{r[0]}.{r[1]}"] == all(x["queries"] >= r[2] for x in robust)

    # an interrupted run: drop the last certification rows and one attack file, run again
    path = rows_dir / "certify__gaussian-0.25.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3]) + lines[3][:9])
    (rows_dir / "attack__rnd__hsja.jsonl").unlink()
    stamp = (rows_dir / "attack__undefended__square@20.jsonl").stat().st_mtime_ns
    run_experiment(cfg, out)
    again = list(read_rows(path))
    assert sorted(r["idx"] for r in again) == sorted(r["idx"] for r in cert)
    assert len({r["idx"] for r in again}) == len(again) == 6  # nothing lost, nothing duplicated
    assert [r for r in again if r["idx"] < 3] == [r for r in cert if r["idx"] < 3]
    assert (rows_dir / "attack__undefended__square@20.jsonl").stat().st_mtime_ns == stamp  # not recomputed
    assert (rows_dir / "attack__rnd__hsja.jsonl").is_file()


def test_cli_run_and_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small = {**TINY, "attacks": TINY["attacks"][:1], "certify": []}
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump(small))
    assert main(["check-config", str(p)]) == 0
    assert main(["run", str(p), "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    assert (tmp_path / "r" / "report.md").is_file()
    p.write_text(yaml.safe_dump({**small, "target": {"arch": "smallcnn", "epoch": 1}}))
    capsys.readouterr()
    assert main(["run", str(p), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "target.epoch: unknown key" in err[0]


def test_a_finished_run_with_the_privacy_study_can_be_resumed(tmp_path: Path) -> None:
    cfg = parse_config({"name": "priv", "data": {"dataset": "digits", "n": 6},
                        "target": {"arch": "smallcnn", "train": {"epochs": 1}},
                        "privacy": {"n_members": 20, "sources": ["disjoint"], "distill_budget": 200,
                                    "distill_epochs": 1, "n_smooth": 4, "overfit_n": 0, "shadow": False,
                                    "n_boot": 50}})
    run_experiment(cfg, tmp_path / "r")
    run_experiment(cfg, tmp_path / "r")  # the study used to write into record.config: "another config"
    rec = json.loads((tmp_path / "r" / "record.json").read_text())
    assert rec["config"] == json.loads(json.dumps(cfg.model_dump()))
    titles = {t["title"] for t in rec["tables"]}
    assert {"Privacy study settings", "Membership inference per model and attack"} <= titles


def test_a_process_pool_gives_the_same_rows_as_one_process(tmp_path: Path) -> None:
    cfg = parse_config({**TINY, "certify": []})
    run_experiment(cfg, tmp_path / "one")
    run_experiment(cfg, tmp_path / "pool", workers=2)
    files = sorted(p.name for p in (tmp_path / "one" / "rows").glob("attack__*.jsonl") if "_batches" not in p.name)
    assert len(files) == 6
    for f in files:
        a = list(read_rows(tmp_path / "one" / "rows" / f))
        b = list(read_rows(tmp_path / "pool" / "rows" / f))
        assert sorted(a, key=lambda r: r["idx"]) == sorted(b, key=lambda r: r["idx"]), f
    t1 = json.loads((tmp_path / "one" / "record.json").read_text())["metrics"]
    t2 = json.loads((tmp_path / "pool" / "record.json").read_text())["metrics"]
    assert {k: v for k, v in t1.items() if k != "seconds"} == {k: v for k, v in t2.items() if k != "seconds"}


def test_ray_is_optional_and_named_when_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed: `import ray` fails
    with pytest.raises(ConfigError, match=r"--ray needs Ray: pip install 'bbdefense\[ray\]'"):
        run_experiment(parse_config({**TINY, "certify": []}), tmp_path / "r", use_ray=True)
    assert not (tmp_path / "r").exists()  # refused before any file is written
