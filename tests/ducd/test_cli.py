"""`bbdefense distill` and `bbdefense defend ducd` on a tiny checkpoint: records, budget, errors."""

from __future__ import annotations

import json

import pytest

from bbdefense.certified.ducd import build_surrogate
from bbdefense.cli import main
from bbdefense.models import CheckpointMeta, save_checkpoint


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, mnist5k):
    m = build_surrogate("lenet", num_classes=10, input_shape=(1, 28, 28), mean=mnist5k.mean, std=mnist5k.std, seed=3)
    p = tmp_path_factory.mktemp("ck") / "target"
    save_checkpoint(p, m, CheckpointMeta(arch="lenet", arch_kwargs={"num_classes": 10, "in_channels": 1,
                                                                     "image_size": 28, "mean": list(mnist5k.mean),
                                                                     "std": list(mnist5k.std)},
                                         dataset="mnist5k", num_classes=10, input_shape=[1, 28, 28]))
    return p


def test_distill_cli_writes_records_and_respects_budget(tiny_ckpt, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    rc = main(["distill", "--target", str(tiny_ckpt), "--surrogate", "lenet", "--budget", "1200", "--epochs", "1",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    rec = json.loads((out / "record.json").read_text())
    assert rec["status"] == "complete"
    row = rec["tables"][0]["rows"][0]
    assert row[7] == "1200 (1000 + 200)" and row[8] == 1200  # defender split has 1,000 images
    assert len((out / "rows" / "epochs.jsonl").read_text().splitlines()) == 1
    assert (out / "surrogate.safetensors").is_file() and (out / "report.md").is_file()
    assert "1200 queries (1200 new)" in capsys.readouterr().out
    # a rerun reuses the saved transfer set: no new query
    assert main(["distill", "--target", str(tiny_ckpt), "--surrogate", "lenet", "--budget", "1200", "--epochs", "1",
                 "--out", str(out), "--no-progress"]) == 0
    assert "(0 new)" in capsys.readouterr().out


def test_defend_ducd_cli_end_to_end(tiny_ckpt, tmp_path, capsys) -> None:
    out = tmp_path / "ducd"
    rc = main(["defend", "ducd", "--target", str(tiny_ckpt), "--budget", "1000", "--surrogate", "lenet",
               "--epochs", "1", "--norms", "l2", "--sigmas", "0.5", "-n", "3", "--n0", "10", "--n", "40",
               "--finetune-epochs", "1", "--out", str(out), "--no-progress"])
    assert rc == 0
    rec = json.loads((out / "record.json").read_text())
    assert rec["metrics"]["ducd.distill_queries"] == 1000
    assert rec["metrics"]["ducd.target_queries_total"] == 0  # the transfer set was collected (and saved) first
    assert len((out / "rows" / "cert_DUCD_gaussian_0.5.jsonl").read_text().splitlines()) == 3
    assert "DUCD.l2.score" in capsys.readouterr().out


def test_cli_errors_are_one_line(tiny_ckpt, tmp_path, capsys) -> None:
    rc = main(["defend", "ducd", "--target", str(tiny_ckpt), "--norms", "l3", "--out", str(tmp_path / "x"),
               "--no-progress"])
    assert rc == 2
    assert "unknown norm 'l3'" in capsys.readouterr().err
    rc = main(["distill", "--target", str(tiny_ckpt), "--split", "test", "--out", str(tmp_path / "y")])
    assert rc == 2
    assert "--split must be owner_train, defender or defender_shifted, got 'test'" in capsys.readouterr().err
