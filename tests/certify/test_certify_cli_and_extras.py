"""CLI (certify with resume, certify-curves), training mode ``noise``, purification filter, selection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bbdefense.certify import Smooth, make_noise
from bbdefense.certify.purify import CertifiedFilter, purification_curve
from bbdefense.cli import main
from bbdefense.errors import InputError
from bbdefense.models import BlackBox
from bbdefense.models.checkpoint import CheckpointMeta, save_checkpoint
from bbdefense.models.zoo import build_model
from bbdefense.records import read_rows
from bbdefense.training import TRAIN_MODES, TrainConfig


@pytest.fixture
def digits_ckpt(tmp_path: Path) -> Path:
    kw = {"num_classes": 10, "in_channels": 1, "image_size": 8, "mean": [0.3], "std": [0.4]}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = build_model("smallcnn", **kw)
    out = tmp_path / "digits_cnn"
    save_checkpoint(out, m, CheckpointMeta(arch="smallcnn", arch_kwargs=kw, dataset="digits", num_classes=10,
                                           input_shape=[1, 8, 8], mean=[0.3], std=[0.4]))
    return out


def test_cli_certify_streams_rows_resumes_and_reports(digits_ckpt: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["certify", "--model", str(digits_ckpt), "--noise", "laplace", "--sigma", "0.25", "--n0", "10", "--n",
            "40", "--alpha", "0.01", "--out", str(run), "--no-progress", "--chunk", "2"]
    assert main([*args, "-n", "3"]) == 0
    rows = list(read_rows(run / "rows" / "certify.jsonl"))
    assert [r["idx"] for r in rows] == [0, 1, 2] and all(r["queries"] == 50 for r in rows)
    assert main([*args, "-n", "5"]) == 0  # resume: only the two new images are certified
    rows = list(read_rows(run / "rows" / "certify.jsonl"))
    assert [r["idx"] for r in rows] == [0, 1, 2, 3, 4]
    rec = json.loads((run / "record.json").read_text())
    assert rec["status"] == "complete" and rec["metrics"]["images"] == 5 and rec["metrics"]["queries"] == 250
    assert any("l1 radius" in p["xlabel"] for p in rec["plots"])
    assert (run / "report.md").is_file() and (run / "report.html").is_file()
    assert main([*args, "-n", "1", "--noise", "nope"]) == 2  # typed error -> exit code 2


def test_cli_certify_curves(tmp_path: Path) -> None:
    out = tmp_path / "curves"
    assert main(["certify-curves", "--noise", "gaussian", "--noise", "laplace", "--norm", "l1", "--norm", "l2",
                 "--dim", "16", "--points", "3", "--numerical", "none", "--out", str(out)]) == 0
    rec = json.loads((out / "record.json").read_text())
    assert {p["title"] for p in rec["plots"]} == {"pA-R (l1)", "pA-R (l2)"}


def test_training_mode_noise_uses_the_noise_family() -> None:
    assert "noise" in TRAIN_MODES
    cfg = TrainConfig(mode="noise", noise="gen_gaussian", noise_params={"beta": 1.0}, sigma=0.3)
    cfg.check()
    x = torch.full((20000, 1, 1, 1), 0.5)
    xb = TRAIN_MODES["noise"](torch.nn.Identity(), x, torch.zeros(20000), torch.Generator().manual_seed(0), cfg)
    eps = (xb - x).flatten()
    assert abs(float(eps.std()) - 0.3) < 0.02
    assert float((eps.abs() < 0.05).float().mean()) > 0.2  # Laplace: peaked at 0 (a Gaussian gives ~0.13)
    with pytest.raises(InputError, match="noise family"):
        TrainConfig(mode="noise").check()
    with pytest.raises(InputError):
        TrainConfig(mode="noise", noise="gen_gaussian", noise_params={"beta": -2}).check()


def test_purification_filter_passes_clean_and_rejects_boundary() -> None:
    w = torch.zeros(2, 16)
    w[1, 0] = 1.0
    lin = torch.nn.Linear(16, 2)
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.copy_(torch.tensor([0.0, -0.5]))
    model = torch.nn.Sequential(torch.nn.Flatten(), lin)
    bb = BlackBox.from_module(model, num_classes=2, input_shape=(1, 4, 4))
    x = torch.zeros(4, 1, 4, 4)
    x[:2, 0, 0, 0] = 1.0   # far on the class-1 side: certified
    x[2:, 0, 0, 0] = 0.5   # exactly on the boundary: abstain
    filt = CertifiedFilter(Smooth(bb, make_noise("gaussian", sigma=0.1)), norm="l2", n0=10, n=100)
    r = filt(x)
    assert r.passed.tolist() == [True, True, False, False] and r.labels.tolist() == [1, 1, -1, -1]
    assert r.queries == 4 * 110
    rows = purification_curve(filt, x, torch.tensor([1, 1, 1, 1]), [0.0, 0.2])
    assert rows[0]["pass_rate"] == 0.5 and rows[0]["accuracy_of_passed"] == 1.0 and rows[0]["queries"] == 440
    with pytest.raises(InputError):
        CertifiedFilter(Smooth(bb, make_noise("gaussian"), norms=("l1",)), norm="l2")


@pytest.mark.slow
def test_select_noise_on_digits(tmp_path: Path) -> None:
    from bbdefense.certified.ducd.selection import select_noise

    res = select_noise("smallcnn", "digits", tmp_path, betas=(1.0, 2.0), sigma=0.25, epochs=1, n_images=6, n0=10, n=60,
                       alpha=0.01)
    assert {(r["beta"], r["norm"]) for r in res["rows"]} == {(b, nm) for b in (1.0, 2.0) for nm in ("l1", "l2", "linf")}
    assert all(r["score"] >= 0 and r["queries"] == 6 * 70 for r in res["rows"])
    assert set(res["best"]) == {"l1", "l2", "linf"} and res["grids"]["l1"]["steps"] == 81
