"""Config values refused before anything is written or trained (issue 14): the schema (seed, name, dataset,
checkpoint, noise shape, privacy values) and :func:`check_runnable` (data size, defense and attack values);
a config with defenses and no attacks still measures the defenses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bbdefense.errors import ConfigError
from bbdefense.experiments.config import parse_config
from bbdefense.experiments.preflight import check_radius, check_runnable
from bbdefense.experiments.runner import run_experiment
from bbdefense.records import read_rows
from checkpoint_helpers import save_untrained_smallcnn


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_untrained_smallcnn(tmp_path_factory.mktemp("ck") / "ck")


@pytest.mark.parametrize(("patch", "message"), [
    ({"seed": -1}, "seed: Input should be greater than or equal to 0, got -1"),
    ({"name": "../../etc/x"}, "name must be a plain folder name"),
    ({"name": "/abs"}, "name must be a plain folder name"),
    ({"data": {"dataset": "nosuch"}}, "unknown dataset 'nosuch'"),
    ({"data": {"dataset": "npz"}}, "give data.data_dir"),
    ({"data": {"split_seed": -2}}, "data.split_seed"),
    ({"target": {"checkpoint": "/nonexistent/ck"}}, "checkpoint not found"),
    ({"certify": [{"noise": "gen_gaussian"}]}, "needs its shape in noise_params.beta"),
    ({"certify": [{"noise": "gen_gaussian", "noise_params": {"beta": -1}}]}, "beta"),
    ({"privacy": {"n_members": -3}}, "privacy: n_members must be >= 4, got -3"),
])
def test_schema_refusals(patch: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config({"target": {"arch": "smallcnn"}, **patch})


@pytest.mark.parametrize(("patch", "message"), [
    ({"attacks": [{"name": "square", "params": {"eps": -0.3}}]},
     "attacks.square: eps must be a finite number > 0"),
    ({"attacks": [{"name": "square", "params": {"eps": 2}}]}, "eps 2 is outside (0, 1] for linf"),
    ({"attacks": [{"name": "hsja", "params": {"norm": "l2", "eps": 100}}]},
     "eps 100 is outside (0, 28] for l2"),
    ({"attacks": [{"name": "square", "params": {"p_init": 7}}]}, "p_init"),
    ({"defenses": [{"name": "rnd", "params": {"nu": -1}}]}, "defenses.rnd: rnd: nu must be >= 0, got -1"),
    ({"defenses": [{"name": "rfd", "params": {"layers": ["nosuch"]}}]}, "unknown layer 'nosuch'"),
    ({"data": {"n": 100000}}, "n 100000 asks for more than the 1000 test images"),
    ({"data": {"n_clean": 5000}}, "n_clean 5000 asks for more than the 1000 test images"),
])
def test_check_runnable_refusals(ckpt: Path, patch: dict, message: str) -> None:
    cfg = parse_config({"target": {"checkpoint": str(ckpt)}, **patch})
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_runnable(cfg)


def test_check_runnable_leaves_the_global_rng_alone(ckpt: Path) -> None:
    cfg = parse_config({"target": {"checkpoint": str(ckpt)},
                        "defenses": [{"name": "rnd", "params": {"nu": 0.1}}],
                        "attacks": [{"name": "square", "budget": 5}]})
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    check_runnable(cfg)
    assert torch.equal(torch.rand(3), want)


def test_radius_bounds() -> None:
    check_radius(1.0, "linf", (1, 28, 28))
    check_radius(28.0, "l2", (1, 28, 28))
    check_radius(784.0, "l1", (1, 28, 28))
    for eps, norm in ((1.01, "linf"), (28.01, "l2"), (785.0, "l1"), (0.0, "linf"), (float("nan"), "l2")):
        with pytest.raises(ValueError):
            check_radius(eps, norm, (1, 28, 28))


def test_defenses_are_measured_without_attacks(ckpt: Path, tmp_path: Path) -> None:
    cfg = parse_config({"name": "defonly", "target": {"checkpoint": str(ckpt)},
                        "data": {"n": 5, "n_clean": 20, "clean_passes": 1},
                        "defenses": [{"name": "rnd", "params": {"nu": 0.05}}]})
    run_experiment(cfg, tmp_path / "run")
    rows = list(read_rows(tmp_path / "run" / "rows" / "defenses.jsonl"))
    assert [r["model"] for r in rows] == ["undefended", "rnd"]
    assert all(0.0 <= r["clean_accuracy"] <= 1.0 for r in rows)


def test_a_refused_config_writes_no_run_dir(ckpt: Path, tmp_path: Path) -> None:
    cfg = parse_config({"target": {"checkpoint": str(ckpt)},
                        "defenses": [{"name": "rnd", "params": {"nu": -1}}]})
    with pytest.raises(ConfigError):
        run_experiment(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
