"""Certification runs as evaluations: certify images with a :class:`~bbdefense.certify.Smooth` into
streamed per-image rows (resume by image index), then rows -> certified-accuracy curves and tables per
norm, with Clopper-Pearson intervals. ``bbdefense certify``, the config runner, the certify demo slice
and the paper suites all use it.

Conventions:

* an image counts at radius ``r`` when its certificate is correct **and** ``radius >= r`` (Cohen /
  Salman ``analyze.py``); abstentions are wrong; a missing radius counts as 0, a NaN one (no closed
  form under ``radius_method="closed"``) as not certified;
* each image's noise is seeded by ``(seed, idx)`` (``Smooth(..., indices=)``), so rows do not depend
  on the chunking, the batch size or on which images an interrupted run had already written;
* the radius grids are defined here once: :data:`RADII` (the fixed radii of the denoised-smoothing
  tables, ZO-AE-DS Table 2 / IRS-Net), :func:`default_grid` (81 points on ``[0, 4 sigma]``, linf
  divided by ``sqrt(d)``) and :func:`table_radii` (DUCD Table IV's 0.25 steps). ``NORMS`` lives in
  :mod:`bbdefense.certify.noises`.

Row schema (one per image): ``idx``, ``label`` (true class), ``predict`` (-1 abstain), ``correct``,
``abstain``, ``pA_lower``, ``radius_<norm>`` per certified norm, ``radius_method``, ``approximate``,
``nA`` (estimation count of the predicted class, or the largest count on abstention), ``queries``
(charged per image), ``samples`` (noisy draws spent on the image: ``n0 + n``; a sequential run stops each image
as soon as its decisions are made), ``method`` and ``seconds``; sequential rows add ``decisions`` (tested radius
-> robust / not_robust / undecided, :meth:`bbdefense.certify.Smooth.certify_at`) and ``decision_norm``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from ..certify import Certificate, Smooth
from ..certify.metrics import certified_accuracy as _accuracy
from ..certify.metrics import default_r_max, radius_grid, robust_score
from ..certify.noises import NORMS, check_norm
from ..certify.smooth import Method
from ..errors import InputError
from ..events import EventCallback, emit
from ..records import RowWriter, read_rows
from .intervals import LEVEL, proportion_ci

#: fixed radii of the denoised-smoothing tables (l2; ZO-AE-DS Table 2 uses the first four)
RADII: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
#: points of :func:`default_grid` (rs4a's 81-point grid)
GRID_STEPS = 81


def default_grid(norm: str, sigma: float, d: int, steps: int = GRID_STEPS) -> np.ndarray:
    """``linspace(0, r_max, steps)`` with ``r_max = 4 sigma`` (l1, l2) or ``4 sigma / sqrt(d)`` (linf)."""
    return radius_grid(default_r_max(norm, sigma, d), steps)


def table_radii(norm: str, d: int) -> list[float]:
    """DUCD Table IV's radii: l1/l2 ``0.25..2.0`` step 0.25; linf the l2 grid divided by ``sqrt(d)``
    (rounded to 5 digits; a Gaussian l2 radius R certifies ``R / sqrt(d)`` in linf)."""
    check_norm(norm)
    base = [0.25 * i for i in range(1, 9)]
    return [round(r / float(np.sqrt(d)), 5) for r in base] if norm == "linf" else base


# ---------------------------------------------------------------------------------------------- rows
def certificate_row(idx: int, label: int, cert: Certificate, *, queries: int,
                    seconds: float | None = None) -> dict[str, Any]:
    """The row of image ``idx`` (true class ``label``) certified as ``cert`` (see the module docstring)."""
    row: dict[str, Any] = {
        "idx": int(idx), "label": int(label), "predict": cert.label, "correct": cert.label == int(label),
        "abstain": cert.abstain, "pA_lower": cert.pA_lower,
        **{f"radius_{k}": v for k, v in cert.radius.items()},
        "radius_method": cert.radius_method, "approximate": cert.approximate,
        "nA": (cert.counts[cert.label] if cert.label >= 0 else max(cert.counts)) if cert.counts else None,
        "queries": int(queries), "samples": cert.n0 + cert.n, "method": cert.method}
    if cert.decisions:
        row["decisions"], row["decision_norm"] = dict(cert.decisions), cert.decision_norm
    if seconds is not None:
        row["seconds"] = round(seconds, 4)
    return row


def rows_from_certificates(certs: Sequence[Certificate], labels: Sequence[int] | Tensor,
                           index: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Rows of certificates obtained directly from :meth:`Smooth.certify` (``queries = n0 + n``)."""
    ys = labels.tolist() if isinstance(labels, Tensor) else list(labels)
    if len(ys) != len(certs):
        raise InputError(f"{len(certs)} certificates for {len(ys)} labels")
    idx = list(range(len(certs))) if index is None else list(index)
    return [certificate_row(i, y, c, queries=c.n0 + c.n) for i, y, c in zip(idx, ys, certs, strict=True)]


@dataclass
class CertifyRun:
    """What :func:`certify_rows` returns: ``rows`` of every requested image in the order of ``index``
    (read back from disk for images a resumed run had written), ``new`` rows written by this call,
    ``queries`` charged by this call and its ``seconds``."""

    rows: list[dict[str, Any]]
    new: int
    queries: int
    seconds: float


def certify_rows(smooth: Smooth, x: Tensor, y: Tensor, index: Sequence[int] | None = None, *,
                 n0: int = 100, n: int = 10_000, alpha: float = 0.001, batch_size: int = 1000, seed: int = 0,
                 chunk: int = 10, writer: RowWriter | None = None, on_event: EventCallback | None = None,
                 task: str = "certify", method: Method = "cohen", randomized: bool = False,
                 radii: Sequence[float] = (0.25, 0.5, 1.0), max_n: int = 100_000,
                 norm: str | None = None) -> CertifyRun:
    """Certify ``x`` ``(N, C, H, W)`` (true labels ``y`` ``(N,)``, named ``index``, default ``0..N-1``) with
    ``smooth``, ``chunk`` images per call, one row per image written as each chunk finishes. Images whose
    index ``writer`` already holds are skipped (resume). ``method="cohen"`` (``randomized``: randomized
    Clopper-Pearson) spends ``n0 + n`` per image; ``method="sequential"`` decides robustness at ``radii``
    (in ``norm``) with at most ``n0 + max_n`` per image (:meth:`~bbdefense.certify.Smooth.certify`). A larger
    ``chunk`` keeps a sequential run's forward batches full for longer (images finish at different times)."""
    if chunk < 1:
        raise InputError(f"chunk must be >= 1, got {chunk}")
    idx = list(range(len(x))) if index is None else [int(i) for i in index]
    if len(idx) != len(x) or len(y) != len(x):
        raise InputError(f"{len(x)} images, {len(y)} labels and {len(idx)} indices must match")
    pos = {i: p for p, i in enumerate(idx)}
    done = writer.done if writer is not None else set()
    todo = [i for i in idx if i not in done]
    bb = smooth.model
    new: list[dict[str, Any]] = []
    q_start, t_start = bb.stats.queries, time.perf_counter()
    emit(on_event, "start", task, total=len(todo), unit="images")
    for s in range(0, len(todo), chunk):
        ids = todo[s:s + chunk]
        sel = [pos[i] for i in ids]
        q0, t1 = bb.stats.queries, time.perf_counter()
        certs = smooth.certify(x[sel], n0=n0, n=n, alpha=alpha, batch_size=batch_size, seed=seed, indices=ids,
                               on_event=on_event, method=method, randomized=randomized, radii=radii, max_n=max_n,
                               norm=norm)
        dt, dq = (time.perf_counter() - t1) / len(ids), bb.stats.queries - q0
        spent = sum(c.queries for c in certs)
        for i, p, c in zip(ids, sel, certs, strict=True):
            # queries charged per image: its samples times the backend's cost per sample (1 unless EOT)
            q = dq // len(ids) if method == "cohen" else round(c.queries * dq / max(spent, 1))
            row = certificate_row(i, int(y[p]), c, queries=q, seconds=dt)
            if writer is None or writer.write(row):
                new.append(row)
        emit(on_event, "advance", task, n=len(ids), queries=bb.stats.queries - q0)
    emit(on_event, "end", task)
    return CertifyRun(resumed_rows(new, writer, idx), len(new), bb.stats.queries - q_start,
                      time.perf_counter() - t_start)


def resumed_rows(new: Sequence[dict[str, Any]], writer: RowWriter | None, idx: Sequence[int]) -> list[dict[str, Any]]:
    """The rows of images ``idx`` in that order: the ``new`` ones, else those ``writer``'s file already held
    (a resumed run); images with neither are left out."""
    wanted = set(idx)
    by_idx = {r["idx"]: r for r in new}
    if writer is not None and writer.path.is_file():
        for r in read_rows(writer.path):
            if r.get("idx") in wanted:
                by_idx.setdefault(r["idx"], r)
    return [by_idx[i] for i in idx if i in by_idx]


# -------------------------------------------------------------------------------- curves and tables
def _radii_correct(rows: Sequence[dict[str, Any]], norm: str) -> tuple[list[float], list[bool]]:
    """Per row: the radius in ``norm`` (0 when missing or abstained) and whether the prediction is right."""
    check_norm(norm)
    radii, correct = [], []
    for r in rows:
        if "radius" in r and isinstance(r["radius"], dict):  # the nested form of older paper rows
            rad, pred, y = r["radius"].get(norm), r.get("predict", r.get("label")), r.get("y", r.get("label"))
        else:
            rad, pred, y = r.get(f"radius_{norm}"), r["predict"], r["label"]
        abstain = bool(r.get("abstain", False)) or pred is None or int(pred) < 0
        radii.append(0.0 if abstain or rad is None else float(rad))
        correct.append(not abstain and pred is not None and y is not None and int(pred) == int(y))
    return radii, correct


def certified_accuracy(rows: Sequence[dict[str, Any]], norm: str, radii: Sequence[float] | np.ndarray) -> list[float]:
    """Certified accuracy at each radius: fraction of rows correct with ``radius_norm >= r``."""
    if not rows:
        return [math.nan] * len(radii)
    rad, ok = _radii_correct(rows, norm)
    return [float(v) for v in _accuracy(rad, ok, radii)]


def certified_accuracy_ci(rows: Sequence[dict[str, Any]], norm: str, radii: Sequence[float], *,
                          level: float = LEVEL) -> list[dict[str, Any]]:
    """Per radius: ``{"radius", "accuracy", "low", "high", "k", "n"}`` with the two-sided ``level``
    Clopper-Pearson interval of the certified accuracy over the ``n`` rows."""
    n = len(rows)
    rad, ok = _radii_correct(rows, norm) if rows else ([], [])
    out = []
    for r in radii:
        k = sum(1 for ri, ci in zip(rad, ok, strict=True) if ci and not math.isnan(ri) and ri >= r)
        lo, hi = proportion_ci(k, n, level)
        out.append({"radius": float(r), "accuracy": k / n if n else math.nan, "low": lo, "high": hi, "k": k,
                    "n": n})
    return out


@dataclass
class CertifiedCurve:
    """Certified accuracy vs radius in one norm: ``grid``, ``curve``, DUCD's robust score (area under
    the curve on ``[0, r_max]``, Eq. 8) and the 95% interval at each of :attr:`quarters`."""

    norm: str
    grid: list[float]
    curve: list[float]
    score: float
    r_max: float
    n: int

    @property
    def quarters(self) -> list[int]:
        """Grid indices of r = 0, r_max/4, r_max/2, 3 r_max/4."""
        m = len(self.grid) - 1
        return [min(int(j * m / 4), m) for j in range(4)]


def certified_curve(rows: Sequence[dict[str, Any]], norm: str, grid: Sequence[float] | np.ndarray) -> CertifiedCurve:
    """The certified-accuracy curve of ``rows`` in ``norm`` on ``grid`` (which starts at 0)."""
    g = np.asarray(grid, dtype=float)
    curve = np.asarray(certified_accuracy(rows, norm, g), dtype=float)
    score = robust_score(curve.tolist(), g.tolist())
    return CertifiedCurve(norm, g.tolist(), curve.tolist(), float(score["score"]), float(score["r_max"]),
                          len(rows))


def abstain_rate(rows: Sequence[dict[str, Any]]) -> float:
    return sum(bool(r["abstain"]) for r in rows) / max(len(rows), 1)


def certification_table_rows(label: str, rows: Sequence[dict[str, Any]], curves: Sequence[CertifiedCurve], *,
                             level: float = LEVEL) -> list[list[Any]]:
    """Rows of the "Certified accuracy" table (:data:`TABLE_COLUMNS`), one per norm of ``curves``."""
    out = []
    q = sum(int(r["queries"]) for r in rows)
    approx = any(r.get("approximate") for r in rows)
    for c in curves:
        at = [c.curve[i] for i in c.quarters]
        (ci,) = certified_accuracy_ci(rows, c.norm, [0.0], level=level)
        out.append([label, c.norm, at[0], [round(ci["low"], 4), round(ci["high"], 4)], *at[1:], c.score,
                    c.r_max, abstain_rate(rows), approx, q])
    return out


TABLE_COLUMNS = ["setting", "norm", "r=0", "r=0 95% CI", "r=r_max/4", "r=r_max/2", "r=3r_max/4",
                 "robust score", "r_max", "abstain rate", "approximate", "queries"]


__all__ = ["GRID_STEPS", "NORMS", "RADII", "TABLE_COLUMNS", "CertifiedCurve", "CertifyRun", "abstain_rate",
           "certificate_row", "certification_table_rows", "certified_accuracy", "certified_accuracy_ci",
           "certified_curve", "certify_rows", "default_grid", "resumed_rows", "rows_from_certificates", "table_radii"]
