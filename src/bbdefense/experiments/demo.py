"""``bbdefense demo``: the main job on the embedded default data.

Trains (or reuses a cached) SmallCNN target on the MNIST-5k owner split, wraps it as a
query-counted black box, runs every registered **demo slice** in order, and writes
``report.md`` / ``report.html``. Each slice writes its tables and plots (with the queries it spent
next to its figures) into the run record as soon as it finishes, so an interrupted demo keeps
what it did and a rerun resumes after the last finished slice.

Slices live in :mod:`bbdefense.experiments.slices` (one module per part of the library) and
register themselves with :func:`~bbdefense.experiments.context.register_slice`; the context they receive,
the slice registry and the demo target recipe live in :mod:`bbdefense.experiments.context`, which the
slices import (never this module, so the demo and its slices do not import each other).
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from pathlib import Path

from ..data import load_dataset, make_splits
from ..errors import MissingExtraError
from ..evaluation.report import add_glance_table
from ..events import EventCallback, emit
from ..models import load_checkpoint
from ..records import RunDir, render_report
from ..training import train_target
from .context import DEMO_ARCH, DEMO_DATASET, DEMO_SLICES, DEMO_TRAIN, DemoContext, DemoSlice, register_slice


def _load_slices() -> None:
    from . import slices

    for m in pkgutil.iter_modules(slices.__path__):
        importlib.import_module(f"{slices.__name__}.{m.name}")


def available_slices(quick: bool = False) -> list[DemoSlice]:
    _load_slices()
    items = sorted((DEMO_SLICES[n] for n in DEMO_SLICES), key=lambda s: (s.order, s.name))
    return [s for s in items if s.quick or not quick]


def run_demo(out: str | Path = "runs/demo", *, quick: bool = False, seed: int = 0, only: list[str] | None = None,
             cache_dir: str | Path | None = None, resume: bool = True,
             on_event: EventCallback | None = None) -> RunDir:
    """Run the demo into ``out`` and render its report. Returns the run directory.

    ``only`` restricts the slices by name; ``cache_dir`` (default ``<out>/../cache``) keeps the
    trained target between runs.
    """
    out = Path(out)
    cache = Path(cache_dir) if cache_dir is not None else out.parent / "cache"
    slices = available_slices(quick)
    if only:
        for n in only:
            DEMO_SLICES[n]  # unknown names raise UnknownNameError
        slices = [s for s in slices if s.name in only]
    config = {"quick": quick, "seed": seed, "slices": [s.name for s in slices], "arch": DEMO_ARCH,
              "dataset": DEMO_DATASET}
    run = RunDir(out, kind="demo", name="bbdefense demo", config=config, seeds={"demo": seed}, resume=resume)
    t0 = time.perf_counter()
    emit(on_event, "info", "demo", message=f"target: {DEMO_ARCH} on {DEMO_DATASET} (cache {cache})")
    tpath, tmeta = train_target(DEMO_ARCH, DEMO_DATASET, cache / f"target_{DEMO_ARCH}_{DEMO_DATASET}", DEMO_TRAIN,
                                reuse=True, on_event=on_event)
    module, _ = load_checkpoint(tpath)
    splits = make_splits(load_dataset(DEMO_DATASET), seed=0)
    ctx = DemoContext(run, quick, seed, tpath, tmeta, module, splits, cache, on_event)
    done = {s["title"] for s in run.record.sections if s.get("status") == "complete"}
    emit(on_event, "start", "demo slices", total=len(slices), unit="slices")
    for s in slices:
        if s.title in done:
            emit(on_event, "info", "demo", message=f"slice {s.name}: already done, skipped")
            emit(on_event, "advance", "demo slices")
            continue
        emit(on_event, "info", "demo", message=f"slice {s.name}: {s.title}")
        ts = time.perf_counter()
        ctx.section(s.title)
        status = "complete"
        try:
            s.run(ctx)
        except MissingExtraError as exc:  # a lean install: the slice needs an optional extra (rerun resumes it)
            emit(on_event, "info", "demo", message=f"slice {s.name}: skipped ({exc})")
            ctx.section(s.title, f"Skipped: {exc}")
            status = "skipped"
        for sec in run.record.sections:
            if sec["title"] == s.title:
                sec["status"] = status
                sec["seconds"] = round(time.perf_counter() - ts, 2)
        run.set_metrics(**{f"seconds.{s.name}": round(time.perf_counter() - ts, 2)})
        emit(on_event, "advance", "demo slices")
    emit(on_event, "end", "demo slices")
    run.set_metrics(seconds_total=round(time.perf_counter() - t0, 2))
    add_glance_table(run)
    run.finish()
    render_report(run.path)
    return run


__all__ = ["DEMO_ARCH", "DEMO_DATASET", "DEMO_SLICES", "DEMO_TRAIN", "DemoContext", "DemoSlice", "available_slices",
           "register_slice", "run_demo"]
