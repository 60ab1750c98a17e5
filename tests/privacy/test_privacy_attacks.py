"""Membership inference on trained models: the overfit positive control, the disjoint negative
control, agreement with scikit-learn computed independently, the gap attack's rule, smoothing, records."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from bbdefense.certify import Smooth, make_noise
from bbdefense.data import load_dataset
from bbdefense.models import BlackBox
from bbdefense.privacy import (
    SIGNALS,
    GapAttack,
    ShadowModelAttack,
    ShadowRef,
    ThresholdAttack,
    attack_metrics,
    evaluate_privacy,
    model_outputs,
    smoothed_blackbox,
)
from bbdefense.records import RunDir
from bbdefense.training import TrainConfig, train_classifier

SHAPE = (1, 8, 8)


def _mlp(seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def _train(data, seed: int, epochs: int) -> nn.Module:
    m = _mlp(seed)
    train_classifier(m, data, TrainConfig(epochs=epochs, batch_size=50, lr=5e-3, seed=seed))
    return m.eval()


@pytest.fixture(scope="module")
def world() -> dict:
    """digits (8x8): members (150), non-members (150), a disjoint set (150) and a shadow pool (300)."""
    ds = load_dataset("digits")
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))
    parts = {"mem": perm[:150], "non": perm[150:300], "dis": perm[300:450], "sh_in": perm[450:600],
             "sh_out": perm[600:750]}
    d = {k: ds.subset(v) for k, v in parts.items()}
    d["overfit"] = _train(d["mem"], 0, 40)           # memorises its 150 members
    d["disjoint"] = _train(d["dis"], 1, 40)          # never saw members nor non-members
    d["shadow"] = _train(d["sh_in"], 2, 40)          # attacker's shadow, same recipe, disjoint data
    return d


def _bb(m: nn.Module, output: str = "logits") -> BlackBox:
    return BlackBox.from_module(m, num_classes=10, input_shape=SHAPE, output=output)


def _scores(att, bb, w):
    x = torch.cat([w["mem"].x, w["non"].x])
    y = torch.cat([w["mem"].y, w["non"].y])
    truth = np.r_[np.ones(150, bool), np.zeros(150, bool)]
    return att.score(bb, x, y), truth


@pytest.mark.parametrize("sig", SIGNALS)
def test_overfit_target_leaks_membership(world: dict, sig: str) -> None:
    s, truth = _scores(ThresholdAttack(sig), _bb(world["overfit"]), world)
    met = attack_metrics(s, truth, n_boot=300, seed=0)
    assert met["auc_low"] > 0.5, met


def test_shadow_attack_on_overfit_target(world: dict) -> None:
    att = ShadowModelAttack(n_estimators=50, seed=0)
    att.fit(_bb(world["shadow"]), world["sh_in"].x, world["sh_in"].y, world["sh_out"].x, world["sh_out"].y)
    bb = _bb(world["overfit"])
    s, truth = _scores(att, bb, world)
    met = attack_metrics(s, truth, n_boot=300, seed=0)
    assert met["auc_low"] > 0.5, met
    assert bb.stats.queries == 300


@pytest.mark.parametrize("sig", ["confidence", "loss", "modified_entropy"])
def test_model_disjoint_from_members_does_not_leak(world: dict, sig: str) -> None:
    s, truth = _scores(ThresholdAttack(sig), _bb(world["disjoint"]), world)
    met = attack_metrics(s, truth, n_boot=500, seed=0)
    assert met["auc_low"] <= 0.5 <= met["auc_high"], met


def test_confidence_auc_equals_sklearn_on_independent_scores(world: dict) -> None:
    m = world["overfit"]
    x = torch.cat([world["mem"].x, world["non"].x])
    y = torch.cat([world["mem"].y, world["non"].y])
    truth = np.r_[np.ones(150), np.zeros(150)]
    with torch.no_grad():  # independent: the module directly, float32 softmax, numpy indexing
        p = torch.softmax(m(x), 1).numpy()
    ref = roc_auc_score(truth, p[np.arange(len(y)), y.numpy()])
    ours = attack_metrics(ThresholdAttack("confidence").score(_bb(m), x, y), truth.astype(bool), n_boot=20)["auc"]
    assert ours == pytest.approx(ref, abs=1e-9)


def test_gap_attack_is_correctness_on_label_only_box(world: dict) -> None:
    m = world["overfit"]
    x = torch.cat([world["mem"].x, world["non"].x])
    y = torch.cat([world["mem"].y, world["non"].y])
    with torch.no_grad():
        expect = (m(x).argmax(1) == y).numpy()
    bb = _bb(m, output="label")
    assert np.array_equal(GapAttack().predict(bb, x, y), expect)
    assert bb.stats.queries == 300
    assert expect[:150].mean() > expect[150:].mean()  # members are classified correctly more often


def test_smoothed_blackbox_counts_and_frequencies(world: dict) -> None:
    base = _bb(world["overfit"])
    sm = smoothed_blackbox(Smooth(base, make_noise("gaussian", sigma=0.25)), n=20, seed=0)
    x = world["mem"].x[:6]
    p = model_outputs(sm, x)
    assert base.stats.queries == 6 * 20 and sm.stats.queries == 6
    assert torch.allclose(p.sum(1), torch.ones(6, dtype=torch.float64))
    assert torch.allclose(p * 20, (p * 20).round())  # frequencies of 20 draws
    assert sm.randomized


def test_evaluate_privacy_streams_rows_and_report(world: dict, tmp_path) -> None:
    run = RunDir(tmp_path / "r", kind="privacy", config={})
    sh = ShadowRef(_bb(world["shadow"]), world["sh_in"].x, world["sh_in"].y, world["sh_out"].x, world["sh_out"].y)
    models = {"overfit": _bb(world["overfit"]), "disjoint": _bb(world["disjoint"]),
              "overfit/label": _bb(world["overfit"], "label")}
    rows = evaluate_privacy(models, world["mem"].x, world["mem"].y, world["non"].x, world["non"].y,
                            shadows={"overfit": sh}, n_boot=100, seed=0, run=run, section="MIA")
    by = {(r["model"], r["attack"]): r for r in rows}
    assert len([r for r in rows if r["model"] == "overfit"]) == 6  # 4 thresholds + gap + shadow
    assert [r["attack"] for r in rows if r["model"] == "overfit/label"] == ["gap (label-only)"]
    assert by[("overfit", "loss")]["balanced_acc"] > 0.55
    assert all(r["queries"] == 300 and r["n_eval"] == 150 for r in rows)
    lines = (run.path / "rows" / "privacy.jsonl").read_text().splitlines()
    assert len(lines) == len(rows)
    kinds = {p["kind"]: p for p in run.record.plots}
    assert set(kinds) == {"bar", "line"}  # the Fig. 9 bars and the log-log ROC curves
    roc = kinds["line"]
    assert roc["xscale"] == roc["yscale"] == "log" and roc["shade_x"][1] == pytest.approx(1 / 75)
    assert all(min(s["x"]) >= 1 / 75 - 1e-9 for s in roc["series"])  # nothing below the FPR resolution drawn
