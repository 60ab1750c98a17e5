"""The attacks demo slice on a context built by hand (slow: it attacks 28x28 images)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bbdefense.attacks import ATTACKS
from bbdefense.experiments.demo import DemoContext
from bbdefense.experiments.slices.attacks import TITLE, attacks_slice
from bbdefense.models import build_model
from bbdefense.records import RunDir


@pytest.mark.slow
def test_attacks_slice_reports_every_black_box_attack(tmp_path: Path, mnist_splits) -> None:  # type: ignore[no-untyped-def]
    kw = {"num_classes": 10, "in_channels": 1, "image_size": 28}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = build_model("smallcnn", **kw).eval()
    run = RunDir(tmp_path / "demo", kind="demo")
    meta = {"input_shape": [1, 28, 28], "num_classes": 10}
    ctx = DemoContext(run, True, 0, tmp_path / "t", meta, module, mnist_splits, tmp_path)
    attacks_slice(ctx)
    tab = next(t for t in run.record.tables if t["title"] == "Robust accuracy under query attacks")
    names = [r[0] for r in tab["rows"]]
    assert names == sorted(n for n in ATTACKS if ATTACKS[n].access in ("scores", "label") and not ATTACKS[n].requires)
    assert all(r[5] > 0 for r in tab["rows"])  # queries shown next to every figure
    assert any(s["title"] == TITLE for s in run.record.sections)
