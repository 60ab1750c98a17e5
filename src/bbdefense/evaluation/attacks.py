"""Running an attack as an evaluation: batches, streamed per-image rows with resume, and the
robust-accuracy-vs-queries curve. Shared by ``bbdefense attack`` and the attacks demo slice.

Conventions:

* the images given are the ones to attack (callers pick correctly classified ones, as every
  reference does: only those consume budget);
* robust accuracy at budget ``q`` = fraction of attacked images *not* fooled within ``q`` queries
  (an image fooled after ``queries[i]`` queries counts as fooled for every ``q >= queries[i]``);
  over correctly classified images, so it is the robust accuracy *relative* to clean accuracy;
* rows are written per image as each batch finishes; a rerun skips the batches whose rows are all
  on disk and re-runs (with the same seed, so the same result) a batch that was interrupted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..errors import InputError
from ..events import EventCallback, emit
from ..models import BlackBox
from ..records import RowWriter
from ..attacks.base import ATTACKS, Attack


def build_attack(name: str, *, norm: str | None = None, eps: float | None = None, max_queries: int | None = None,
                 seed: int | None = 0, params: dict[str, Any] | None = None) -> Attack:
    """Instantiate attack ``name`` with the common settings it accepts, plus ``params``.

    The common settings (``norm``, ``eps``, ``max_queries``, ``seed``) are passed only to attacks
    that declare them (:meth:`Attack.param_names`); a key of ``params`` the attack does not take
    raises :class:`InputError` listing the accepted ones.
    """
    cls = ATTACKS[name]
    sig = accepted = cls.param_names()
    kw: dict[str, Any] = {}
    for key, val in (("norm", norm), ("eps", eps), ("max_queries", max_queries), ("seed", seed)):
        if val is not None and key in sig:
            kw[key] = val
    for key, val in (params or {}).items():
        if key not in sig:
            raise InputError(f"attack {name!r} has no parameter {key!r}; it takes: {', '.join(accepted)}")
        kw[key] = val
    return cls(**kw)


def query_grid(budget: int) -> list[int]:
    """Budgets at which the curve is read: 1, 2, 5, 10, 20, 50, ... below ``budget``, and ``budget``."""
    grid, base = [], 1
    while base < budget:
        for m in (1, 2, 5):
            if m * base < budget:
                grid.append(m * base)
        base *= 10
    return [*grid, budget]


def robust_curve(success: Sequence[bool], queries: Sequence[int], grid: Sequence[int]) -> list[float]:
    """Robust accuracy at each budget of ``grid`` (see module docstring). Empty input gives NaN."""
    n = len(success)
    if n == 0:
        return [float("nan")] * len(grid)
    return [1.0 - sum(1 for s, q in zip(success, queries, strict=True) if s and q <= b) / n for b in grid]


def summarize(rows: Sequence[dict[str, Any]], budget: int) -> dict[str, Any]:
    """Robust accuracy, success rate and query statistics of per-image rows."""
    n = len(rows)
    succ = [bool(r["success"]) for r in rows]
    q = [int(r["queries"]) for r in rows]
    qs = [qi for s, qi in zip(succ, q, strict=True) if s]
    return {
        "n_attacked": n,
        "robust_accuracy": 1.0 - sum(succ) / n if n else None,
        "attack_success_rate": sum(succ) / n if n else None,
        "median_queries_success": statistics.median(qs) if qs else None,
        "mean_queries_success": sum(qs) / len(qs) if qs else None,
        "mean_queries": sum(q) / n if n else None,
        "total_queries": sum(q),
        "budget": budget,
    }


def run_batches(attack: Attack, model: BlackBox, x: Tensor, y: Tensor, index: Sequence[int], *,
                target: Tensor | None = None, x_init: Tensor | None = None, batch_size: int = 100,
                writer: RowWriter | None = None,
                batch_writer: RowWriter | None = None, on_event: EventCallback | None = None,
                task: str = "attack") -> list[dict[str, Any]]:
    """Attack ``x`` in fixed batches, writing one row per image (``idx`` = ``index[i]``).

    Returns the rows of this call (rows already on disk are skipped, not returned).
    Shape: ``x`` and ``x_init`` (starting points, for attacks that take them) ``(N, C, H, W)``,
    ``y``/``target`` ``(N,)``, ``len(index) == N``.
    """
    if len(index) != len(x):
        raise InputError(f"index has {len(index)} entries for {len(x)} images")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    done = writer.done if writer is not None else set()
    out: list[dict[str, Any]] = []
    emit(on_event, "start", task, total=len(x), message=f"{attack.name}", unit="images")
    for b0 in range(0, len(x), batch_size):
        sl = slice(b0, b0 + batch_size)
        ids = list(index[sl])
        if all(i in done for i in ids):
            emit(on_event, "advance", task, n=len(ids))
            continue
        t0 = time.perf_counter()
        res = attack.run(model, x[sl], y[sl], target=None if target is None else target[sl],
                         x_init=None if x_init is None else x_init[sl])
        secs = time.perf_counter() - t0
        for j, i in enumerate(ids):
            row = {"idx": int(i), "label": int(y[sl][j]), "success": bool(res.success[j]),
                   "queries": int(res.queries[j]), "norm": float(res.norms[j]), "batch": b0 // batch_size}
            if target is not None:
                row["target"] = int(target[sl][j])
            if writer is None or writer.write(row):
                out.append(row)
        if batch_writer is not None:
            batch_writer.write({"idx": b0 // batch_size, "n": len(ids), "audit_queries": res.audit_queries,
                                "queries": int(res.queries.sum()), "seconds": round(secs, 4),
                                "criterion": res.criterion})
        emit(on_event, "advance", task, n=len(ids), queries=int(res.queries.sum()))
    emit(on_event, "end", task)
    return out


def starts_of_class(pool_x: Tensor, pool_y: Tensor, target: Tensor, *, exclude: Tensor | None = None) -> Tensor:
    """Starting points for targeted decision attacks: for each entry of ``target`` ``(N,)``, an image of
    ``pool_x`` ``(M, C, H, W)`` whose *true* label ``pool_y`` is that class (cycling through the pool's
    images of the class, skipping the indices in ``exclude``). No query is made: the attack checks each
    start itself (charged). Raises :class:`InputError` if the pool has no image of a target class."""
    keep = torch.ones(len(pool_y), dtype=torch.bool)
    if exclude is not None:
        keep[exclude.long()] = False
    out = torch.empty((len(target), *pool_x.shape[1:]), dtype=pool_x.dtype)
    used: dict[int, int] = {}
    for i, c in enumerate(target.tolist()):
        idx = ((pool_y == c) & keep).nonzero().squeeze(1)
        if len(idx) == 0:
            raise InputError(f"no image of target class {c} to start a targeted attack from")
        out[i] = pool_x[idx[used.get(c, 0) % len(idx)]]
        used[c] = used.get(c, 0) + 1
    return out


def first_correct(model: BlackBox, x: Tensor, y: Tensor, n: int, *, batch_size: int = 500) -> tuple[Tensor, int, int]:
    """Indices of the first ``n`` images ``model`` classifies correctly, checked with ``audit``
    queries (free on a local model, charged by a remote API: ``model.audit_charged``).
    Returns ``(indices, n_scanned, n_correct_among_scanned)``."""
    found: list[Tensor] = []
    count = 0
    for b0 in range(0, len(x), batch_size):
        out = model.audit(x[b0:b0 + batch_size])
        pred = out if model.output == "label" else out.argmax(1)
        ok = (pred == y[b0:b0 + batch_size]).nonzero().flatten() + b0
        found.append(ok)
        count += len(ok)
        if count >= n:
            break
    idx = torch.cat(found)[:n] if found else torch.zeros(0, dtype=torch.long)
    scanned = int(idx[-1]) + 1 if count >= n and len(idx) else len(x)
    return idx, scanned, len(idx)


__all__ = ["build_attack", "first_correct", "query_grid", "robust_curve", "run_batches", "starts_of_class", "summarize"]
