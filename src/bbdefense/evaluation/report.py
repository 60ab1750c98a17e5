"""Evaluations into a run record: the tables, plots, checks and metrics that ``bbdefense attack``,
``bbdefense certify`` and ``bbdefense run`` add to a :class:`~bbdefense.records.RunDir` from the rows of
:mod:`.attacks` and :mod:`.certification` (data only; ``render_report`` draws them)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..records import RunDir, line_plot, table
from .attacks import AttackEvaluation
from .certification import (
    TABLE_COLUMNS,
    CertifiedCurve,
    abstain_rate,
    certification_table_rows,
    certified_curve,
    default_grid,
)
from .intervals import proportion_ci


# ------------------------------------------------------------------------------------------ attacks
def fmt_ci(ci: Sequence[float] | None, digits: int = 3) -> list[float] | None:
    """``[lo, hi]`` rounded for a table cell (None stays None)."""
    return None if ci is None else [round(float(v), digits) for v in ci]


def add_attack_curve(run: RunDir, title: str, series: Mapping[str, AttackEvaluation], *,
                     section: str) -> None:
    """A robust-accuracy-vs-queries plot, one series per label of ``series`` (queries spent in the label)."""
    lines = [{"label": f"{label} ({ev.summary['total_queries']} queries)", "x": ev.grid, "y": ev.curve}
             for label, ev in series.items()]
    run.add_plot({**line_plot(title, lines, xlabel="queries per image", ylabel="robust accuracy", xscale="log"),
                  "section": section})


def add_attack_run(run: RunDir, ev: AttackEvaluation, *, label: str, section: str, text: str,
                   **metrics: Any) -> None:
    """The record of a single attack run (``bbdefense attack``): section text, metrics (the summary,
    audit queries, attack seconds and ``metrics``), the curve as a table and as a plot."""
    run.record.sections = [{"title": section, "text": text}]
    run.set_metrics(**ev.summary, **metrics, audit_queries=ev.audit_queries,
                    attack_seconds=round(ev.seconds, 3))
    n = len(ev.rows)
    lo, hi = ev.summary["robust_accuracy_ci"] or (None, None)
    run.add_table({**table("Robust accuracy vs queries", ["queries per image", "robust accuracy", "fooled"],
                           [[q, c, round((1 - c) * n)] for q, c in zip(ev.grid, ev.curve, strict=True)],
                           f"{n} images; total queries spent {ev.summary['total_queries']}; robust accuracy at the "
                           f"budget, 95% Clopper-Pearson interval: "
                           f"{'-' if lo is None else f'[{lo:.3f}, {hi:.3f}]'}"), "section": section})
    run.add_plot({**line_plot("Robust accuracy vs queries", [{"label": label, "x": ev.grid, "y": ev.curve}],
                              xlabel="queries per image", ylabel="robust accuracy", xscale="log"),
                  "section": section})


def budget_exhaustion(ev: AttackEvaluation) -> tuple[int, int]:
    """``(early, robust)``: images counted robust, and those of them that stopped before spending the
    budget (the attack claimed a success its criterion did not confirm: robust accuracy is optimistic)."""
    robust = [r for r in ev.rows if not r["success"]]
    return sum(1 for r in robust if r["queries"] < ev.budget), len(robust)


# ------------------------------------------------------------------------------------ certification
@dataclass
class CertifiedSetting:
    """The rows of one certification (one noise and sigma) and how to name it in the record:
    ``label`` in plots and tables, ``key`` in check and metric names (``None``: unsuffixed)."""

    label: str
    sigma: float
    norms: Sequence[str]
    rows: list[dict[str, Any]]
    key: str | None = None


def add_certification(run: RunDir, settings: Sequence[CertifiedSetting], *, d: int, section: str,
                      caption: str = "") -> dict[str, list[CertifiedCurve]]:
    """Per setting and norm a certified-accuracy-vs-radius plot on :func:`default_grid`, one
    "Certified accuracy" table (with the 95% interval at r = 0), an abstain-rate check and the robust
    scores as metrics. Returns the curves per setting label."""
    body: list[list[Any]] = []
    out: dict[str, list[CertifiedCurve]] = {}
    for s in settings:
        rows = s.rows
        q = sum(int(r["queries"]) for r in rows)
        tag = " (approximate: numerical radii)" if any(r.get("approximate") for r in rows) else ""
        curves = [certified_curve(rows, nm, default_grid(nm, s.sigma, d)) for nm in s.norms]
        out[s.label] = curves
        for c in curves:
            run.add_plot({**line_plot(f"Certified accuracy vs {c.norm} radius: {s.label}{tag}", [
                {"label": f"{s.label} ({q} queries)", "x": c.grid, "y": c.curve, "marker": ""}],
                xlabel=f"{c.norm} radius", ylabel="certified accuracy"), "section": section})
            name = f"certified.{s.key}.{c.norm}.robust_score" if s.key else f"certified.{c.norm}.robust_score"
            run.set_metrics(**{name: c.score})
        body += certification_table_rows(s.label, rows, curves)
        abst = abstain_rate(rows)
        run.add_check("abstain_rate" + (f".{s.key}" if s.key else ""), abst < 0.5,
                      f"{abst:.1%} of images abstained")
    run.add_table({**table("Certified accuracy", TABLE_COLUMNS, body, (
        (caption + "; " if caption else "") + "certified accuracy at r = correct certificates with radius "
        ">= r (abstentions wrong); r=0 95% CI: Clopper-Pearson over the images; r_max: the end of the radius "
        "grid (4 sigma; linf 4 sigma / sqrt(d)); robust score = area under the certified-accuracy curve on "
        "[0, r_max] (DUCD Eq. 8)")), "section": section})
    return out


# ------------------------------------------------------------------------------------- at a glance
GLANCE = "Results at a glance"
_GLANCE_KEY = "glance"  # record.metrics["glance"]: {model: {column: {"value", "low", "high", "n", "note"}}}


def ci_cell(value: float | None, low: float | None = None, high: float | None = None, n: int | None = None,
            note: str = "") -> str:
    """``"0.850 [0.621, 0.968] n=20"``: a value, its 95% interval and the count it rests on, in one cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    out = f"{value:.3f}"
    if low is not None and high is not None and not math.isnan(low):
        out += f" [{low:.3f}, {high:.3f}]"
    if n is not None:
        out += f" n={n}"
    return out + (f" ({note})" if note else "")


def glance_accuracy(run: RunDir, model: str, column: str, k: int, n: int, *, note: str = "") -> None:
    """Note a proportion ``k / n`` (clean, robust or certified accuracy of ``model``) for the at-a-glance table,
    with its two-sided 95% Clopper-Pearson interval (:func:`.intervals.proportion_ci`)."""
    lo, hi = proportion_ci(k, n)
    glance_value(run, model, column, k / n if n else math.nan, lo, hi, n=n, note=note)


def glance_value(run: RunDir, model: str, column: str, value: float, low: float | None = None,
                 high: float | None = None, *, n: int | None = None, note: str = "") -> None:
    """Note any value with its interval (e.g. a membership-inference AUC with its bootstrap interval) for the
    at-a-glance table; ``column`` names the column, the first noted model and column come first."""
    g = run.record.metrics.setdefault(_GLANCE_KEY, {})
    g.setdefault(model, {})[column] = {"value": value, "low": low, "high": high, "n": n, "note": note}
    run.save()


def family_robust(evaluations: Mapping[str, AttackEvaluation]) -> tuple[int, int]:
    """``(k, n)``: images that withstood *every* attack of ``evaluations`` (the same images attacked by each),
    the per-image worst case over an attack family."""
    fooled: dict[Any, bool] = {}
    for ev in evaluations.values():
        for r in ev.rows:
            fooled[r["idx"]] = fooled.get(r["idx"], False) or bool(r["success"])
    return sum(1 for f in fooled.values() if not f), len(fooled)


def add_glance_table(run: RunDir, text: str = "") -> None:
    """The "Results at a glance" table from the values noted with :func:`glance_accuracy` /
    :func:`glance_value`: one row per model, one column per noted quantity, every accuracy with its 95%
    interval and n. Its section goes first in the report."""
    g: dict[str, dict[str, dict[str, Any]]] = run.record.metrics.get(_GLANCE_KEY, {})
    if not g:
        return
    order = ("clean", "robust", "certified", "MIA")  # then anything else, each group in the order noted
    cols = sorted(dict.fromkeys(c for cols in g.values() for c in cols),
                  key=lambda c: next((i for i, w in enumerate(order) if c.startswith(w)), len(order)))
    rows = [[model, *[ci_cell(**cells[c]) if c in cells else "-" for c in cols]] for model, cells in g.items()]
    secs = [s for s in run.record.sections if s["title"] != GLANCE]
    run.record.sections = [{"title": GLANCE, "text": text or (
        "The headline numbers of this run: each accuracy with its two-sided 95% Clopper-Pearson interval "
        "[low, high] over the n images it rests on; membership-inference AUC with its bootstrap 95% interval "
        "(0.5 is chance). A robust accuracy per attack family counts the images that withstood every attack "
        "of the family. The sections below give the details and the queries spent."), "status": "complete"},
        *secs]
    run.add_table({**table("Results at a glance", ["model", *cols], rows,
                           "- : not measured for this model"), "section": GLANCE})


__all__ = ["GLANCE", "CertifiedSetting", "add_attack_curve", "add_attack_run", "add_certification", "add_glance_table",
           "budget_exhaustion", "ci_cell", "family_robust", "fmt_ci", "glance_accuracy", "glance_value"]


# ------------------------------------------------------------------------------- sequential samples
def samples_summary(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean, median, p90 and max of the noisy samples spent per image (``samples``, else ``queries``)."""
    import numpy as np

    a = np.asarray([r.get("samples", r["queries"]) for r in rows], dtype=float)
    if a.size == 0:
        return {"mean": float("nan"), "median": float("nan"), "p90": float("nan"), "max": float("nan")}
    return {"mean": float(a.mean()), "median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "max": float(a.max())}


def add_samples_table(run: RunDir, rows: Sequence[dict[str, Any]], radii: Sequence[float], *,
                      section: str) -> None:
    """The decisions and samples of a sequential certification run (``certify_rows(method="sequential")``):
    per tested radius the robust / not robust / undecided counts and certified accuracy (a correct label decided
    robust), then the distribution of samples per image (mean, median, p90, max) and its histogram (log bins)."""
    import numpy as np

    from .certification import certified_accuracy

    body = []
    for r in [0.0, *radii]:
        key = f"{r:g}"
        dec = [row.get("decisions", {}).get(key, "undecided") for row in rows]
        norm = next((row.get("decision_norm") for row in rows if row.get("decision_norm")), "l2")
        acc = certified_accuracy(rows, str(norm), [r])[0]
        body.append([r, dec.count("robust"), dec.count("not_robust"), dec.count("undecided"), acc])
    s = samples_summary(rows)
    run.add_table({**table("Sequential decisions per radius", ["radius", "robust", "not robust", "undecided",
                                                              "certified accuracy"], body,
                           f"{len(rows)} images; samples per image: mean {s['mean']:.0f}, median "
                           f"{s['median']:.0f}, p90 {s['p90']:.0f}, max {s['max']:.0f} (selection included); "
                           "each decision is wrong with probability <= alpha"), "section": section})
    spent = np.asarray([row.get("samples", row["queries"]) for row in rows], dtype=float)
    if spent.size:
        edges = 10.0 ** np.arange(1, max(2, int(np.ceil(np.log10(max(spent.max(), 10.0)))) + 1))
        counts, _ = np.histogram(np.clip(spent, edges[0], edges[-1]), bins=edges)
        run.add_table({**table("Samples per image (histogram)", ["samples", "images"],
                               [[f"{lo:.0f}-{hi:.0f}", int(c)] for lo, hi, c in zip(edges[:-1], edges[1:],
                                                                                     counts, strict=True)]),
                       "section": section})


__all__ += ["add_samples_table", "samples_summary"]
