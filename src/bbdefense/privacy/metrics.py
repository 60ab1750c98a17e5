"""Membership-inference metrics, computed with scikit-learn.

* balanced attack accuracy: ``(TPR + TNR) / 2`` of hard member predictions
  (:func:`sklearn.metrics.balanced_accuracy_score`); equals plain accuracy on a balanced set.
* ROC-AUC of real-valued membership scores (higher = more likely a member).
* TPR at a low FPR (1% and 0.1%), Carlini et al. 2022 ("Membership inference attacks from first
  principles", arXiv 2112.03570): the largest TPR over ROC points whose FPR <= the target.
* a seeded percentile-bootstrap confidence interval of the AUC (members and non-members resampled
  with replacement, jointly; resamples with one class only are redrawn).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import balanced_accuracy_score, roc_auc_score, roc_curve

from ..errors import InputError


def _arrays(scores: Any, is_member: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    m = np.asarray(is_member).reshape(-1).astype(bool)
    if s.shape != m.shape:
        raise InputError(f"scores has {s.shape[0]} entries but is_member has {m.shape[0]}")
    if m.all() or not m.any():
        raise InputError(f"need both members and non-members, got {int(m.sum())} members of {m.size}")
    if not np.isfinite(s).all():
        raise InputError(f"scores contain {int((~np.isfinite(s)).sum())} non-finite values")
    return s, m


def tpr_at_fpr(scores: Any, is_member: Any, fpr: float) -> float:
    """Largest TPR among ROC operating points with FPR <= ``fpr`` (0 if none)."""
    if not 0.0 <= fpr <= 1.0:
        raise InputError(f"fpr must be in [0, 1], got {fpr}")
    s, m = _arrays(scores, is_member)
    f, t, _ = roc_curve(m, s)
    ok = f <= fpr + 1e-12
    return float(t[ok].max()) if ok.any() else 0.0


def _rank_auc(s: np.ndarray, m: np.ndarray) -> float:
    """Mann-Whitney AUC with mid-ranks for ties (equal to ``roc_auc_score``; fast for the bootstrap)."""
    r = rankdata(s)
    n1 = int(m.sum())
    n0 = m.size - n1
    return float((r[m].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def bootstrap_auc(scores: Any, is_member: Any, *, n_boot: int = 1000, level: float = 0.95,
                  seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap ``(low, high)`` interval of the ROC-AUC at confidence ``level``.

    Uses its own ``numpy.random.Generator(PCG64(seed))``; the same inputs and seed give the same interval.
    """
    if n_boot < 10:
        raise InputError(f"n_boot must be >= 10, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise InputError(f"level must be in (0, 1), got {level}")
    s, m = _arrays(scores, is_member)
    rng = np.random.default_rng(seed)
    aucs = np.empty(n_boot)
    k = 0
    while k < n_boot:
        idx = rng.integers(0, s.size, s.size)
        mm = m[idx]
        if mm.all() or not mm.any():
            continue
        aucs[k] = _rank_auc(s[idx], mm)
        k += 1
    a = (1.0 - level) / 2
    lo, hi = np.quantile(aucs, [a, 1.0 - a])
    return float(lo), float(hi)


def attack_metrics(scores: Any, is_member: Any, predictions: Any | None = None, *, n_boot: int = 1000,
                   seed: int = 0) -> dict[str, Any]:
    """All metrics of one attack on one model.

    Args:
        scores: ``(N,)`` membership scores, higher = member.
        is_member: ``(N,)`` bool ground truth.
        predictions: ``(N,)`` bool hard decisions (for the balanced accuracy); omitted -> no accuracy.
        n_boot, seed: bootstrap of the AUC interval.

    Returns:
        ``{"auc", "auc_low", "auc_high", "tpr@1%fpr", "tpr@0.1%fpr", "fpr_resolution", "roc_fpr", "roc_tpr"
        [, "balanced_acc"]}``. ``fpr_resolution`` = 1 / (number of non-members): the smallest non-zero FPR
        the scored set can show; a TPR at a lower FPR (e.g. TPR@0.1%FPR with 50 non-members) is the TPR
        at FPR = 0 and says nothing about that FPR (reports flag it). ``roc_fpr``/``roc_tpr``: the ROC
        curve's points (sklearn, ``drop_intermediate``).
    """
    s, m = _arrays(scores, is_member)
    lo, hi = bootstrap_auc(s, m, n_boot=n_boot, seed=seed)
    f, t, _ = roc_curve(m, s)
    out: dict[str, Any] = {"auc": float(roc_auc_score(m, s)), "auc_low": lo, "auc_high": hi,
                           "tpr@1%fpr": tpr_at_fpr(s, m, 0.01), "tpr@0.1%fpr": tpr_at_fpr(s, m, 0.001),
                           "fpr_resolution": 1.0 / int((~m).sum()),
                           "roc_fpr": [round(float(v), 6) for v in f], "roc_tpr": [round(float(v), 6) for v in t]}
    if predictions is not None:
        p = np.asarray(predictions).reshape(-1).astype(bool)
        if p.shape != m.shape:
            raise InputError(f"predictions has {p.shape[0]} entries but is_member has {m.shape[0]}")
        out["balanced_acc"] = float(balanced_accuracy_score(m, p))
    return out


__all__ = ["attack_metrics", "bootstrap_auc", "tpr_at_fpr"]
