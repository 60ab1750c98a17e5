"""`defend ducd` / `defend zo-ae-ds` / `defend irs` save the fitted defense into the run dir; `--load DIR`
certifies it again without fitting, with identical certificates; DUCD's saved surrogate is a checkpoint
`bbdefense certify --model` takes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bbdefense.cli import main
from checkpoint_helpers import save_untrained_smallcnn


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_untrained_smallcnn(tmp_path_factory.mktemp("m") / "lenet", arch="lenet", mean=(0.13,), std=(0.31,),
                                   train={"split_seed": 0})


def _rows(path: Path) -> list[dict]:
    """The certificate rows without their wall time (``seconds``), which no two runs share."""
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in path.read_text().splitlines()]


def test_defend_ducd_saves_and_loads_the_defense(ckpt: Path, tmp_path: Path, capsys) -> None:
    common = ["--norms", "l2", "-n", "3", "--n0", "10", "--n", "40", "--no-progress"]
    assert main(["defend", "ducd", "--model", str(ckpt), "--budget", "300", "--surrogate", "lenet", "--epochs", "1",
                 "--sigmas", "0.5", "--finetune-epochs", "1", "--out", str(tmp_path / "a"), *common]) == 0
    saved = tmp_path / "a" / "defense" / "gaussian_0.5"
    meta = json.loads((saved / "defense.json").read_text())
    assert meta["class"] == "DUCD" and meta["queries"] == 300 and meta["split_seed"] == 0
    assert main(["defend", "ducd", "--load", str(saved), "--out", str(tmp_path / "b"), *common]) == 0
    a, b = (_rows(tmp_path / d / "rows" / "cert_DUCD_gaussian_0.5.jsonl") for d in ("a", "b"))
    assert a == b and len(a) == 3
    rec = json.loads((tmp_path / "b" / "record.json").read_text())
    assert rec["metrics"]["ducd.target_queries_total"] == 0 and rec["metrics"]["ducd.distill_queries"] == 300
    # the noise-fine-tuned surrogate is a classifier checkpoint of its own (split seed and dataset recorded)
    assert main(["certify", "--model", str(saved / "base"), "--sigma", "0.5", "-n", "2", "--n0", "10", "--n", "20",
                 "--out", str(tmp_path / "c"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["defend", "ducd", "--out", str(tmp_path / "d"), *common]) == 2
    assert "give either --model/--target" in capsys.readouterr().err


def test_defend_zo_ds_run_dir_is_a_loadable_defense(ckpt: Path, tmp_path: Path, capsys) -> None:
    common = ["--model", str(ckpt), "--n-test", "2", "--n0", "4", "--n", "16", "--no-progress"]
    assert main(["defend", "zo-ae-ds", "--variant", "zo-ds", "--q", "2", "--epochs", "1", "--n-train", "10",
                 "--batch-size", "5", "--out", str(tmp_path / "a"), *common]) == 0
    assert main(["defend", "zo-ae-ds", "--load", str(tmp_path / "a"), "--out", str(tmp_path / "b"), *common]) == 0
    a, b = (_rows(tmp_path / d / "rows" / "certify.jsonl") for d in ("a", "b"))
    assert a == b and len(a) == 2
    ra, rb = (json.loads((tmp_path / d / "record.json").read_text()) for d in ("a", "b"))
    assert rb["metrics"]["train_queries"] == ra["metrics"]["train_queries"] == 2 * (5 + 5 * 3)
    assert rb["metrics"]["certify_queries"] == 2 * 20 and rb["config"]["variant"] == "zo-ds"
    # a model of another split seed: its test split could hold the images the denoiser was trained on
    meta = json.loads(ckpt.with_suffix(".json").read_text())
    meta["train"]["split_seed"] = 3
    other = tmp_path / "seed3"
    other.with_suffix(".safetensors").write_bytes(ckpt.with_suffix(".safetensors").read_bytes())
    other.with_suffix(".json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["defend", "zo-ae-ds", "--load", str(tmp_path / "a"), "--out", str(tmp_path / "c"),
                 *[str(other) if a == str(ckpt) else a for a in common]]) == 2
    assert "trained with split seed 0, the model's test split is seed 3's" in capsys.readouterr().err


def test_defend_irs_load_needs_no_surrogate(ckpt: Path, tmp_path: Path, capsys) -> None:
    common = ["--model", str(ckpt), "--n-test", "2", "--n0", "4", "--n", "16", "--no-progress"]
    assert main(["defend", "irs", "--surrogate", str(ckpt), "--epochs", "1", "--width", "4", "--n-train", "8",
                 "--out", str(tmp_path / "a"), *common]) == 0
    assert main(["defend", "irs", "--load", str(tmp_path / "a"), "--out", str(tmp_path / "b"), *common]) == 0
    a, b = (_rows(tmp_path / d / "rows" / "certify.jsonl") for d in ("a", "b"))
    assert a == b
    rb = json.loads((tmp_path / "b" / "record.json").read_text())
    assert rb["metrics"]["surrogate_forwards"] == 8 and rb["metrics"]["certify_queries"] == 40
    capsys.readouterr()
    assert main(["defend", "irs", "--model", str(ckpt), "--out", str(tmp_path / "c")]) == 2
    assert "give either --surrogate" in capsys.readouterr().err
