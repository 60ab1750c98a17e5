"""The one attack pipeline: an attack run as an evaluation, in fixed batches, with per-image rows
streamed to a :class:`~bbdefense.records.RowWriter` (resume), the robust-accuracy-vs-queries curve and a
summary with a 95% Clopper-Pearson interval. ``bbdefense attack``, the config runner, the owner-defense
evaluation (:mod:`.owner`), the demo slices and the paper suites all run attacks through
:func:`evaluate_attack` (or its per-batch core :func:`run_batches`).

Conventions:

* the images given are the ones to attack (callers pick correctly classified ones with
  :func:`first_correct`, as every reference does: only those consume budget);
* robust accuracy at budget ``q`` = fraction of attacked images *not* fooled within ``q`` queries
  (an image fooled after ``queries[i]`` queries counts as fooled for every ``q >= queries[i]``);
  over correctly classified images, so it is the robust accuracy *relative* to clean accuracy;
* rows are written per image as each batch finishes; a rerun skips the batches whose rows are all
  on disk and re-runs (with the same seed, so the same result) a batch that was interrupted; the
  writer refuses a duplicate key, so a resume never duplicates a row.

Row schema (one per image): ``idx`` (the caller's index, e.g. into the test split), ``label``,
``success``, ``queries`` (charged on the model), ``norm`` (``||x_adv - x||`` in the attack's norm),
``batch``, and ``target`` for targeted runs. Batch rows: ``idx`` (batch number), ``n``,
``audit_queries``, ``queries``, ``seconds``, ``criterion``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..attacks.base import ATTACKS, Attack
from ..errors import InputError
from ..events import EventCallback, emit
from ..models import BlackBox
from ..records import RowWriter, read_rows
from .intervals import LEVEL, proportion_ci


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


def attack_blackbox(module: nn.Module, attack: Attack | str, *, num_classes: int,
                    input_shape: tuple[int, int, int], name: str = "model", eot: int | None = None,
                    reseed: int | None = None, budget: int | None = None) -> BlackBox:
    """A fresh query-counted model of ``module`` for ``attack``: a :class:`~bbdefense.models.WhiteBox`
    for white-box attacks, a label-only black box for decision attacks, a logits one otherwise.

    ``eot``: wrap it in ``EOTBlackBox(bb, m=eot)`` (``m`` queries averaged and charged per evaluation);
    ``None`` wraps nothing. ``reseed``: restart an owner-side defense first (:meth:`Defense.restart`:
    its random stream from this seed, its query-to-query state such as UniG's momentum forgotten, the
    same for nested defenses), so every run of it is reproducible and independent of the runs before it.
    ``budget``: the black box's hard query limit (``None``: none).
    """
    from ..defenses.base import Defense

    access = (ATTACKS[attack] if isinstance(attack, str) else type(attack)).access
    if reseed is not None and isinstance(module, Defense):
        module.restart(reseed)
    if access == "white":
        from ..models import WhiteBox

        bb: BlackBox = WhiteBox(module, num_classes=num_classes, input_shape=input_shape, budget=budget)
    else:
        bb = BlackBox.from_module(module, num_classes=num_classes, input_shape=input_shape,
                                  output="label" if access == "label" else "logits", name=name, budget=budget)
    if eot is not None:
        from ..attacks.eot import EOTBlackBox

        bb = EOTBlackBox(bb, m=eot)
    return bb


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


def summarize(rows: Sequence[dict[str, Any]], budget: int, *, level: float = LEVEL) -> dict[str, Any]:
    """Robust accuracy with its ``level`` Clopper-Pearson interval (``robust_accuracy_ci``), ``n``,
    success rate and query statistics of per-image rows."""
    n = len(rows)
    succ = [bool(r["success"]) for r in rows]
    q = [int(r["queries"]) for r in rows]
    qs = [qi for s, qi in zip(succ, q, strict=True) if s]
    lo, hi = proportion_ci(n - sum(succ), n, level)
    return {
        "n_attacked": n,
        "n": n,
        "robust_accuracy": 1.0 - sum(succ) / n if n else None,
        "robust_accuracy_ci": [lo, hi] if n else None,
        "ci_level": level,
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
    return _run_batches(attack, model, x, y, index, target=target, x_init=x_init, batch_size=batch_size,
                        writer=writer, batch_writer=batch_writer, on_event=on_event, task=task)[0]


def _run_batches(attack: Attack, model: BlackBox, x: Tensor, y: Tensor, index: Sequence[int], *,
                 target: Tensor | None, x_init: Tensor | None, batch_size: int, writer: RowWriter | None,
                 batch_writer: RowWriter | None, on_event: EventCallback | None,
                 task: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """:func:`run_batches`, also returning the batch rows of this call."""
    if len(index) != len(x):
        raise InputError(f"index has {len(index)} entries for {len(x)} images")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    done = writer.done if writer is not None else set()
    out: list[dict[str, Any]] = []
    batches: list[dict[str, Any]] = []
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
        brow = {"idx": b0 // batch_size, "n": len(ids), "audit_queries": res.audit_queries,
                "queries": int(res.queries.sum()), "seconds": round(secs, 4), "criterion": res.criterion}
        batches.append(brow)
        if batch_writer is not None:
            batch_writer.write(brow)
        emit(on_event, "advance", task, n=len(ids), queries=int(res.queries.sum()))
    emit(on_event, "end", task)
    return out, batches


@dataclass
class AttackEvaluation:
    """What :func:`evaluate_attack` returns.

    ``rows``: one per attacked image, in the order of ``index`` (rows read back from disk for images
    a resumed run had already attacked); ``new``: how many of them this call produced; ``batches``:
    the batch rows (from disk too when a ``batch_writer`` was given); ``grid``/``curve``: robust
    accuracy vs queries per image; ``summary``: :func:`summarize` of the rows.
    """

    attack: str
    params: dict[str, Any]
    budget: int
    rows: list[dict[str, Any]]
    new: int
    batches: list[dict[str, Any]]
    grid: list[int]
    curve: list[float]
    summary: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def audit_queries(self) -> int:
        return sum(int(b["audit_queries"]) for b in self.batches)

    @property
    def seconds(self) -> float:
        return float(sum(b["seconds"] for b in self.batches))

    @property
    def criteria(self) -> list[str]:
        return sorted({str(b["criterion"]) for b in self.batches})


def evaluate_attack(model: BlackBox, attack: Attack | str, x: Tensor, y: Tensor,
                    index: Sequence[int] | None = None, *, budget: int | None = None,
                    grid: Sequence[int] | None = None, params: dict[str, Any] | None = None,
                    norm: str | None = None, eps: float | None = None, seed: int | None = 0,
                    target: Tensor | None = None, x_init: Tensor | None = None, batch_size: int = 100,
                    writer: RowWriter | None = None, batch_writer: RowWriter | None = None,
                    on_event: EventCallback | None = None, task: str = "attack") -> AttackEvaluation:
    """Run ``attack`` on ``model`` as an evaluation: rows streamed (resume), curve, summary.

    Args:
        model: the query-counted model to attack (see :func:`attack_blackbox`).
        attack: an :class:`~bbdefense.attacks.Attack`, or a name of ``ATTACKS`` built by
            :func:`build_attack` with ``norm``, ``eps``, ``max_queries=budget``, ``seed`` and ``params``.
        x, y: images ``(N, C, H, W)`` in [0, 1] and labels ``(N,)``; ``index`` names them in the rows
            (default ``0..N-1``).
        budget: queries per image (default: the attack's ``max_queries``, else the largest spent).
        grid: budgets at which the curve is read (default :func:`query_grid` of ``budget``).
        target, x_init: targeted runs, starting points (:func:`attack_inputs`).
        batch_size: images attacked together; ``writer``/``batch_writer``: where rows stream.
    """
    if isinstance(attack, str):
        attack = build_attack(attack, norm=norm, eps=eps, max_queries=budget, seed=seed, params=params)
    elif params or norm is not None or eps is not None:
        raise InputError("norm, eps and params apply to an attack given by name; this one is already built "
                         f"({attack!r})")
    idx = list(range(len(x))) if index is None else [int(i) for i in index]
    new, batches = _run_batches(attack, model, x, y, idx, target=target, x_init=x_init, batch_size=batch_size,
                                writer=writer, batch_writer=batch_writer, on_event=on_event, task=task)
    rows = _rows_of(writer, idx, new)
    if batch_writer is not None:
        batches = list(read_rows(batch_writer.path))
    if budget is None:
        budget = getattr(attack, "max_queries", None)
    ev = evaluation_from_rows(rows, batches, budget, grid=grid, attack=attack.name,
                              params=attack.get_params())
    ev.new = len(new)
    return ev


def evaluation_from_rows(rows: Iterable[dict[str, Any]], batches: Iterable[dict[str, Any]] = (),
                         budget: int | None = None, *, grid: Sequence[int] | None = None, attack: str = "",
                         params: dict[str, Any] | None = None) -> AttackEvaluation:
    """An :class:`AttackEvaluation` of rows already on disk (e.g. written by a worker process):
    the curve on ``grid`` (default :func:`query_grid` of ``budget``; ``budget`` defaults to the
    largest number of queries spent) and the summary."""
    rows = list(rows)
    b = int(budget) if budget is not None else max((int(r["queries"]) for r in rows), default=1)
    g = list(grid) if grid is not None else query_grid(b)
    curve = robust_curve([r["success"] for r in rows], [r["queries"] for r in rows], g)
    return AttackEvaluation(attack, dict(params or {}), b, rows, 0, list(batches), g, curve,
                            summarize(rows, b))


def _rows_of(writer: RowWriter | None, index: list[int], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of ``index`` in its order: this call's, plus those a resumed writer already held."""
    by_idx = {r["idx"]: r for r in new}
    if writer is not None and writer.path.is_file():
        want = set(index)
        for r in read_rows(writer.path):
            if r.get("idx") in want:
                by_idx.setdefault(r["idx"], r)
    return [by_idx[i] for i in index if i in by_idx]


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


def draw_targets(y: Tensor, num_classes: int, seed: int) -> Tensor:
    """A random target class ``!= y[i]`` per image ``(N,)``, from a generator seeded with ``seed``."""
    if num_classes < 2:
        raise InputError(f"a targeted attack needs at least 2 classes, got {num_classes}")
    g = torch.Generator().manual_seed(seed)
    return (y + 1 + torch.randint(0, num_classes - 1, y.shape, generator=g)) % num_classes


@dataclass
class AttackInputs:
    """The images of an attack run: ``x`` ``(N, C, H, W)``, ``y`` ``(N,)``, ``index`` (into the pool),
    ``target`` (targeted runs) and ``x_init`` (their starting points, for attacks that take them)."""

    x: Tensor
    y: Tensor
    index: list[int]
    target: Tensor | None = None
    x_init: Tensor | None = None


def attack_inputs(pool_x: Tensor, pool_y: Tensor, index: Tensor | Sequence[int], *, targeted: bool = False,
                  num_classes: int | None = None, seed: int = 0, takes_init: bool = False) -> AttackInputs:
    """The images ``index`` of a pool (e.g. the test split) ready to attack: targets drawn with
    :func:`draw_targets` when ``targeted``, and starting points of the target class from the rest of
    the pool (:func:`starts_of_class`) for attacks that take them."""
    idx = torch.as_tensor(index, dtype=torch.long)
    x, y = pool_x[idx], pool_y[idx]
    target = x_init = None
    if targeted:
        if num_classes is None:
            raise InputError("a targeted run needs num_classes")
        target = draw_targets(y, num_classes, seed)
        if takes_init:
            x_init = starts_of_class(pool_x, pool_y, target, exclude=idx)
    return AttackInputs(x, y, [int(i) for i in idx], target, x_init)


__all__ = ["AttackEvaluation", "AttackInputs", "attack_blackbox", "attack_inputs", "build_attack",
           "draw_targets", "evaluate_attack", "evaluation_from_rows", "first_correct", "query_grid",
           "robust_curve", "run_batches", "starts_of_class", "summarize"]
