"""Exact unit tests of the privacy signals, thresholds and metrics (hand-computed answers)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from bbdefense.errors import ConfigError, InputError
from bbdefense.models import BlackBox
from bbdefense.privacy import (
    GapAttack,
    ThresholdAttack,
    attack_metrics,
    best_threshold,
    bootstrap_auc,
    calibration_split,
    model_outputs,
    signal,
    tpr_at_fpr,
)


def test_signals_match_hand_computed_values() -> None:
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    assert signal("confidence", p, y).tolist() == pytest.approx([0.7, 0.1])
    assert signal("loss", p, y).tolist() == pytest.approx([math.log(0.7), math.log(0.1)])
    ent0 = 0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1)
    assert signal("entropy", p, y)[0].item() == pytest.approx(ent0)
    # Song & Mittal Eq. 5: Mentr = -(1-p_y) log p_y - sum_{i!=y} p_i log(1-p_i)
    m0 = -(0.3) * math.log(0.7) - 0.2 * math.log(0.8) - 0.1 * math.log(0.9)
    m1 = -(0.9) * math.log(0.1) - 0.1 * math.log(0.9) - 0.8 * math.log(0.2)
    assert signal("modified_entropy", p, y).tolist() == pytest.approx([-m0, -m1])


def test_signals_finite_on_one_hot_probabilities() -> None:
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 0])
    for name in ("confidence", "loss", "entropy", "modified_entropy"):
        s = signal(name, p, y)
        assert torch.isfinite(s).all(), name
        if name != "entropy":  # entropy ignores the label: both rows have entropy 0
            assert s[0] > s[1], name  # correct and confident ranks as more member-like


def test_best_threshold_maximises_balanced_accuracy() -> None:
    s_in = np.array([0.9, 0.8, 0.4])
    s_out = np.array([0.1, 0.5, 0.3])
    t = best_threshold(s_in, s_out)
    # t=0.4: TPR 1, TNR 2/3; t=0.8: TPR 2/3, TNR 1 (both 5/6): ties pick the smallest threshold
    assert t == 0.4
    cands = np.unique(np.concatenate([s_in, s_out]))
    objs = [((s_in >= c).mean() + (s_out < c).mean()) / 2 for c in cands]
    assert ((s_in >= t).mean() + (s_out < t).mean()) / 2 == pytest.approx(max(objs))


def test_tpr_at_fpr_and_bootstrap_are_exact_and_seeded() -> None:
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    m = np.array([1, 1, 0, 1, 0, 0], bool)
    assert tpr_at_fpr(s, m, 0.0) == pytest.approx(2 / 3)
    assert tpr_at_fpr(s, m, 0.34) == pytest.approx(1.0)
    a = bootstrap_auc(s, m, n_boot=200, seed=3)
    assert a == bootstrap_auc(s, m, n_boot=200, seed=3)
    assert a != bootstrap_auc(s, m, n_boot=200, seed=4)
    met = attack_metrics(s, m, s > 0.55, n_boot=100)
    assert met["auc"] == pytest.approx(roc_auc_score(m, s))
    assert met["balanced_acc"] == pytest.approx((1.0 + 2 / 3) / 2)  # TPR 1, TNR 2/3
    assert met["auc_low"] <= met["auc"] <= met["auc_high"]


def test_rank_auc_equals_sklearn_with_ties() -> None:
    from bbdefense.privacy.metrics import _rank_auc

    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 200).astype(float)
    m = rng.random(200) < 0.4
    assert _rank_auc(s, m) == pytest.approx(roc_auc_score(m, s), abs=1e-12)


def test_metric_errors_name_the_problem() -> None:
    with pytest.raises(InputError, match="both members and non-members"):
        attack_metrics([0.1, 0.2], [True, True])
    with pytest.raises(InputError, match="3 entries"):
        attack_metrics([0.1, 0.2, 0.3], [True, False])
    with pytest.raises(InputError, match="fpr must be in"):
        tpr_at_fpr([0.1, 0.2], [True, False], 1.5)
    with pytest.raises(InputError, match="calibration fraction"):
        calibration_split(10, 1.0, 0)


def _label_box() -> BlackBox:
    return BlackBox.from_callable(lambda x: (x.flatten(1).sum(1) > 2).long(), returns="label", num_classes=2,
                                  input_shape=(1, 2, 2), output="label")


def test_attack_errors_and_query_counting() -> None:
    with pytest.raises(InputError, match="unknown signal 'foo'"):
        ThresholdAttack("foo")
    x = torch.rand(5, 1, 2, 2)
    y = torch.zeros(5, dtype=torch.long)
    with pytest.raises(ConfigError, match="not fitted"):
        ThresholdAttack("loss").predict_outputs(torch.full((5, 2), 0.5), y)
    bb = _label_box()
    with pytest.raises(ConfigError, match="needs scores"):
        ThresholdAttack("confidence").score(bb, x, y)
    pred = GapAttack().predict(bb, x, y)
    assert bb.stats.queries == 5
    assert pred.tolist() == (bb.backend.forward(x) == y).tolist()
    p = model_outputs(bb, x, batch_size=2)
    assert bb.stats.queries == 10 and p.sum(1).tolist() == [1.0] * 5
