"""Membership-inference evaluation of several models on the same members / non-members (DUCD Fig. 9).

Protocol (documented in ``docs/privacy.md``): members are ``N`` images of the owner's training split,
non-members ``N`` images of the test split. Every model is queried **once** per image (counted on its
black box; a smoothed model also charges ``n`` base queries per image). The threshold attacks fit
their threshold on a seeded calibration half of both sets (an attacker who knows the membership of
some examples: an upper bound for threshold attacks) and every attack is scored on the other half,
so reported accuracies are never measured on the data that chose the threshold. The shadow attack
is fitted on its shadow model's outputs only (never on target data).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..events import EventCallback, emit
from ..models import BlackBox
from ..records import RunDir, line_plot, table
from .metrics import attack_metrics
from .shadow import ShadowModelAttack
from .signals import SIGNALS, model_outputs
from .threshold import GapAttack, MIAttack, ThresholdAttack


@dataclass
class ShadowRef:
    """A shadow model (as a black box) with its own members and non-members."""

    model: BlackBox
    x_in: Tensor
    y_in: Tensor
    x_out: Tensor
    y_out: Tensor


def default_attacks() -> list[MIAttack]:
    """The four threshold attacks and the gap attack (the shadow attack needs a :class:`ShadowRef`)."""
    return [*(ThresholdAttack(s) for s in SIGNALS), GapAttack()]


def calibration_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded ``(calibration, evaluation)`` index split of ``range(n)``."""
    if not 0.0 < fraction < 1.0:
        raise InputError(f"calibration fraction must be in (0, 1), got {fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    k = round(fraction * n)
    if k < 1 or k >= n:
        raise InputError(f"calibration fraction {fraction} of {n} examples leaves an empty half")
    return np.sort(perm[:k]), np.sort(perm[k:])


def evaluate_privacy(models: dict[str, BlackBox], x_mem: Tensor, y_mem: Tensor, x_non: Tensor, y_non: Tensor, *,
                     shadows: dict[str, ShadowRef] | None = None, attacks: Sequence[MIAttack] | None = None,
                     calibration: float = 0.5, n_boot: int = 1000, seed: int = 0, run: RunDir | None = None,
                     section: str | None = None, extra_queries: dict[str, int] | None = None,
                     on_event: EventCallback | None = None) -> list[dict[str, Any]]:
    """Run every attack against every model; one row per (model, attack).

    Args:
        models: name -> black box (probs/logits; label-only boxes get the gap attack only).
        x_mem, y_mem: members ``(N, C, H, W)``, ``(N,)``; x_non, y_non: non-members (same shapes).
        shadows: name -> shadow reference for the shadow attack on that model (optional per model).
        attacks: defaults to :func:`default_attacks`.
        calibration: fraction of members / non-members used to fit thresholds (the rest is scored).
        n_boot, seed: bootstrap of the AUC interval and the calibration split.
        run: rows stream to ``run.rows("privacy")`` (resumable by key ``model/attack``), plus a table and
            a bar chart (like DUCD Fig. 9) under ``section``.
        extra_queries: name -> queries spent on the model before this call (e.g. distillation) to report.
            A smoothed box (:func:`.signals.smoothed_blackbox`) reports base-model queries (``n`` per image).

    Returns:
        Rows ``{"model", "attack", "auc", "auc_low", "auc_high", "tpr@1%fpr", "tpr@0.1%fpr",
        "balanced_acc", "queries", "n_eval"}``.
    """
    if x_mem.shape[0] != y_mem.shape[0] or x_non.shape[0] != y_non.shape[0]:
        raise InputError(f"images and labels differ in length: members {x_mem.shape[0]}/{y_mem.shape[0]}, "
                         f"non-members {x_non.shape[0]}/{y_non.shape[0]}")
    attacks = list(attacks) if attacks is not None else default_attacks()
    ci_m, ev_m = calibration_split(x_mem.shape[0], calibration, seed)
    ci_n, ev_n = calibration_split(x_non.shape[0], calibration, seed + 1)
    writer = run.rows("privacy", key="key") if run is not None else None
    rows: list[dict[str, Any]] = []
    for mname, bb in models.items():
        emit(on_event, "start", f"privacy {mname}", total=len(attacks) + 1, unit="steps")
        q0 = bb.stats.queries
        p_mem, p_non = model_outputs(bb, x_mem), model_outputs(bb, x_non)
        queries = (bb.stats.queries - q0) * int(getattr(bb, "samples_per_query", 1)) + \
            (extra_queries or {}).get(mname, 0)
        todo: list[MIAttack] = [a for a in attacks if bb.reveals_scores or not a.needs_scores]
        if shadows and mname in shadows and bb.reveals_scores:
            sh = shadows[mname]
            todo.append(ShadowModelAttack(seed=seed).fit(sh.model, sh.x_in, sh.y_in, sh.x_out, sh.y_out))
        for att in todo:
            if isinstance(att, ThresholdAttack):
                att.fit_outputs(p_mem[ci_m], y_mem[ci_m], p_non[ci_n], y_non[ci_n])
            pe = torch.cat([p_mem[ev_m], p_non[ev_n]])
            ye = torch.cat([y_mem[ev_m], y_non[ev_n]])
            truth = np.concatenate([np.ones(len(ev_m), bool), np.zeros(len(ev_n), bool)])
            met = attack_metrics(att.score_outputs(pe, ye), truth, att.predict_outputs(pe, ye), n_boot=n_boot,
                                 seed=seed)
            label = getattr(att, "label", att.name)
            row = {"key": f"{mname}/{label}", "model": mname, "attack": label, **met, "queries": int(queries),
                   "n_eval": int(truth.size), "params": att.get_params()}
            rows.append(row)
            if writer is not None:
                writer.write(row)
            emit(on_event, "advance", f"privacy {mname}")
        emit(on_event, "end", f"privacy {mname}")
    if writer is not None:
        writer.close()
    if run is not None:
        add_report(run, rows, section=section)
    return rows


def _tpr_cell(r: dict[str, Any], fpr: float) -> Any:
    """TPR at ``fpr``, or a flag where ``fpr`` is below the resolution 1 / (non-members) of the scored set (then
    the value is the TPR at FPR = 0 and the same for every lower FPR)."""
    res = r.get("fpr_resolution")
    if res is not None and fpr < res - 1e-12:
        return f"n/a (FPR step {res:.3g})"
    return round(r[f"tpr@{fpr * 100:g}%fpr"], 4)


def strongest(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model the row of its strongest attack (highest AUC): what the at-a-glance table and the ROC plot show."""
    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["model"] not in best or r["auc"] > best[r["model"]]["auc"]:
            best[r["model"]] = r
    return best


def add_roc_plot(run: RunDir, rows: list[dict[str, Any]], *, section: str | None = None) -> None:
    """Membership-inference ROC curves on log-log axes (Carlini et al. 2022, Fig. 1), the strongest attack per
    model. Points at FPR below 1 / (non-members) cannot be measured: they are left out and that range is
    shaded; the dotted diagonal is chance."""
    best = [r for r in strongest(rows).values() if r.get("roc_fpr")]
    if not best:
        return
    res = max(float(r["fpr_resolution"]) for r in best)
    lo = min(1e-3, res / 2)
    series = []
    for r in best:
        pts = [(f, t) for f, t in zip(r["roc_fpr"], r["roc_tpr"], strict=True) if f >= res - 1e-12 and t > 0]
        series.append({"label": f"{r['model']}: {r['attack']} (AUC {r['auc']:.3f})", "x": [p[0] for p in pts],
                       "y": [p[1] for p in pts], "drawstyle": "steps-post"})
    run.add_plot({**line_plot(f"Membership-inference ROC, strongest attack per model (log-log; "
                              f"{round(1 / res)} non-members)", series, xlabel="false positive rate",
                              ylabel="true positive rate", xscale="log", yscale="log", xlim=[lo, 1.0],
                              ylim=[lo, 1.05], shade_x=[lo, res],
                              refs=[{"label": "chance", "x": [lo, 1.0], "y": [lo, 1.0]}]),
                  **({"section": section} if section else {})})


def add_report(run: RunDir, rows: list[dict[str, Any]], *, section: str | None = None) -> None:
    """A table of all rows, the log-log ROC curves (:func:`add_roc_plot`) and a Fig. 9-style bar chart
    (balanced attack accuracy per model and attack)."""
    extra = {"section": section} if section else {}
    cols = ["model", "attack", "balanced acc", "AUC", "AUC 95% CI", "TPR@1%FPR", "TPR@0.1%FPR", "n scored",
            "queries"]
    trows = [[r["model"], r["attack"], round(r["balanced_acc"], 4), round(r["auc"], 4),
              f"[{r['auc_low']:.3f}, {r['auc_high']:.3f}]", _tpr_cell(r, 0.01), _tpr_cell(r, 0.001),
              r.get("n_eval"), r["queries"]] for r in rows]
    run.add_table({**table("Membership inference per model and attack", cols, trows,
                           caption="Members: owner training split; non-members: test split (equal numbers). "
                                   "Scored on the half not used to fit thresholds (n scored: members + "
                                   "non-members). AUC 95% CI: bootstrap. TPR at an FPR below 1 / (non-members "
                                   "scored) cannot be measured and is marked n/a. Queries: images sent to the "
                                   "model (smoothed: base-model queries; surrogates: distillation queries)."),
                   **extra})
    add_roc_plot(run, rows, section=section)
    models = list(dict.fromkeys(r["model"] for r in rows))
    labels = list(dict.fromkeys(r["attack"] for r in rows))
    series = []
    for a in labels:
        by = {r["model"]: r["balanced_acc"] for r in rows if r["attack"] == a}
        series.append({"label": a, "x": models, "y": [by.get(m) for m in models]})
    run.add_plot({**line_plot("Membership-inference attack accuracy (cf. DUCD Fig. 9)", series, xlabel="model",
                              ylabel="balanced attack accuracy", kind="bar"), **extra})
    run.save()


__all__ = ["ShadowRef", "add_report", "add_roc_plot", "calibration_split", "default_attacks", "evaluate_privacy",
           "strongest"]
