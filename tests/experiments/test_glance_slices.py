"""The owner-defense demo slice puts its headline figures into the at-a-glance table (one row per defense,
the undefended model on the target's row), each the exact k / n of its evaluation row."""

from __future__ import annotations

from pathlib import Path

import pytest

from bbdefense.experiments.demo import DemoContext
from bbdefense.experiments.slices.owner_defenses import owner_defenses_slice
from bbdefense.models import load_checkpoint
from bbdefense.records import RunDir


def test_owner_defenses_slice_notes_robust_accuracy_at_a_glance(tmp_path: Path, mnist_splits,  # type: ignore[no-untyped-def]
                                                                 trained_smallcnn) -> None:
    path, meta = trained_smallcnn  # the noise calibration needs a model whose accuracy can drop
    module, _ = load_checkpoint(path)
    run = RunDir(tmp_path / "demo", kind="demo")
    ctx = DemoContext(run, True, 0, tmp_path / "t", meta, module, mnist_splits, tmp_path)
    owner_defenses_slice(ctx)
    glance = run.record.metrics["glance"]
    robust = run.record.metrics["owner_defenses.robust"]
    assert set(glance) == {"target", *[k.split("|")[0] for k in robust if not k.startswith("undefended|")]}
    for key, acc in robust.items():
        defense, attack, budget = key.split("|")
        row = glance["target" if defense == "undefended" else defense]
        (col,) = [c for c in row if c.startswith(f"robust accuracy, {attack} (linf 0.3, {budget} queries")]
        cell = row[col]
        assert cell["n"] == 20 and cell["value"] == pytest.approx(acc)
        assert cell["low"] <= acc <= cell["high"]
