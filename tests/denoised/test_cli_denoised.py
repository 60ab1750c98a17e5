"""`bbdefense defend zo-ae-ds` / `defend irs`: end to end on a tiny budget, and typed errors -> exit code 2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bbdefense.cli import main
from bbdefense.models import CheckpointMeta, save_checkpoint
from bbdefense.models.zoo import build_model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    kw = {"num_classes": 10, "in_channels": 1, "image_size": 28, "mean": [0.13], "std": [0.31]}
    model = build_model("lenet", **kw)
    path = tmp_path_factory.mktemp("m") / "lenet"
    save_checkpoint(path, model, CheckpointMeta(arch="lenet", arch_kwargs=kw, kind="classifier", dataset="mnist5k",
                                                num_classes=10, input_shape=[1, 28, 28], mean=[0.13], std=[0.31]))
    return path


def test_defend_zo_ae_ds_end_to_end(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "zo"
    rc = main(["defend", "zo-ae-ds", "--model", str(ckpt), "--variant", "zo-ds", "--q", "2", "--epochs", "1",
               "--n-train", "10", "--batch-size", "5", "--n-test", "2", "--n0", "4", "--n", "16", "--out", str(out),
               "--no-progress"])
    assert rc == 0
    rec = json.loads((out / "record.json").read_text())
    assert rec["metrics"]["train_queries"] == 2 * (5 + 5 * 3)
    assert rec["metrics"]["certify_queries"] == 2 * 20
    assert rec["config"]["config"]["lr"] == 1e-4  # ZO-DS defaults to the paper's from-scratch lr
    assert (out / "pipeline.safetensors").is_file() and (out / "report.md").is_file()
    assert len((out / "rows" / "certify.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_defend_irs_end_to_end(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "irs"
    rc = main(["defend", "irs", "--surrogate", str(ckpt), "--model", str(ckpt), "--epochs", "1", "--width", "4",
               "--n-train", "8", "--n-test", "2", "--n0", "4", "--n", "16", "--out", str(out), "--no-progress"])
    assert rc == 0
    rec = json.loads((out / "record.json").read_text())
    assert rec["metrics"]["surrogate_forwards"] == 8 and rec["metrics"]["certify_queries"] == 40
    from bbdefense.data import load_dataset
    assert abs(rec["metrics"]["pixel_sigma"] - 0.5 * min(load_dataset("mnist5k").std)) < 1e-6  # normalised-space noise


def test_errors_exit_2(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["defend", "zo-ae-ds", "--model", str(ckpt), "--variant", "zo-xx"]) == 2
    assert "unknown variant 'zo-xx'" in capsys.readouterr().err
    assert main(["defend", "irs", "--surrogate", str(ckpt), "--model", str(ckpt), "--method", "dncnn"]) == 2
    assert "unknown denoiser method 'dncnn'" in capsys.readouterr().err


def test_budget_bounds_the_whole_command(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["defend", "zo-ae-ds", "--model", str(ckpt), "--variant", "rs", "--n-test", "2", "--n0", "4", "--n", "16",
            "--no-progress"]
    assert main([*args, "--budget", "40", "--out", str(tmp_path / "ok")]) == 0  # 2 images x (4 + 16) queries
    assert json.loads((tmp_path / "ok" / "record.json").read_text())["metrics"]["certify_queries"] == 40
    assert main([*args, "--budget", "30", "--out", str(tmp_path / "over")]) == 2
    assert "budget" in capsys.readouterr().err.lower()
