"""Paper suites: each reproduces one paper's tables at this machine's scale in a resumable run
directory whose report puts the paper's own figures beside ours (``bbdefense paper NAME``).

:data:`PAPERS` maps a suite name to its :class:`~.base.PaperSuite` (``rfd``, ``unig``, ``ducd``,
``zo-ae-ds``, ``irs-net``); :func:`run_paper` runs one into a :class:`~bbdefense.records.RunDir`
and renders its report. The experiment code lives next to the suites (``ducd.py``, ``zo_ae_ds.py``,
``irs_net.py``; the owner-side suites use :mod:`bbdefense.evaluation.owner`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ...errors import InputError
from ...events import EventCallback, emit
from ...records import RunDir, render_report
from ...registry import Registry
from .base import CertifyingSuiteRun, PaperFigure, PaperSuite, comparison_table, finish_suite
from .ducd_suite import SUITE as _DUCD
from .irs_net_suite import SUITE as _IRS
from .rfd import SUITE as _RFD
from .unig import SUITE as _UNIG
from .zo_ae_ds_suite import SUITE as _ZOAEDS

if TYPE_CHECKING:
    from ...evaluation.distributed import RayOptions

PAPERS: Registry[PaperSuite] = Registry("paper suite")
for _s in (_RFD, _UNIG, _DUCD, _ZOAEDS, _IRS):
    PAPERS.add(_s.name, _s)

def run_paper(name: str, out: str | Path | None = None, *, quick: bool = False, seed: int = 0,
              cache_dir: str | Path | None = None, resume: bool = True, on_event: EventCallback | None = None,
              runner: Callable[..., dict[str, Any]] | None = None, config: dict[str, Any] | None = None,
              ray: RayOptions | None = None, method: str | None = None) -> RunDir:
    """Run suite ``name`` into ``out`` (default ``runs/paper-NAME[-quick]``) and render its report.

    Trained models are cached in ``cache_dir`` (default ``<out>/cache``). A rerun with the same
    settings resumes (the rows already written are kept); other settings in the same directory
    raise :class:`~bbdefense.errors.ConfigError` unless ``resume=False``.

    ``runner`` replaces the suite's ``run`` (same keyword arguments but ``quick``; the benchmark
    scripts pass a suite's ``run_scaled`` with their own scale), ``config`` is recorded with it.

    ``ray``: the suite's certification sharded onto Ray workers (docs/scale-out.md); the rows equal a local
    run's, so ``ray`` is not part of the recorded settings (a run started here resumes on Ray and back).
    ``method``: the certification method (``"cohen"`` | ``"sequential"``; None: the suite's, cohen),
    recorded when it is not the default. Both only for the suites that certify (ducd, irs-net, zo-ae-ds).
    """
    suite = PAPERS[name]
    extra: dict[str, Any] = {}
    if ray is not None or method is not None:
        if not suite.certifies:
            raise InputError(f"paper {name}: --ray and --method apply to the suites that certify ("
                             f"{', '.join(n for n in PAPERS if PAPERS[n].certifies)}); {name} does not")
        if method is not None and method not in ("cohen", "sequential"):
            raise InputError(f"method must be cohen or sequential, got {method!r}")
        if runner is not None and method is not None:
            raise InputError(f"paper {name}: a runner certifies with its own config's method; set it there")
        extra = {"ray": ray} if runner is not None else {"ray": ray, "method": method}
        if method not in (None, "cohen"):  # cohen is every suite's default: a run started without it resumes
            config = {**(config or {}), "method": method}
    path = Path(out) if out is not None else Path("runs") / f"paper-{name}{'-quick' if quick else ''}"
    cache = Path(cache_dir) if cache_dir is not None else path / "cache"
    run = RunDir(path, kind="paper", name=f"{suite.title} ({name}{', quick' if quick else ''})",
                 config={"paper": name, "quick": quick, "seed": seed, **(config or {})}, seeds={"seed": seed},
                 resume=resume)
    emit(on_event, "info", "paper", message=f"{name}: {suite.citation}; run directory {path}, cache {cache}")
    t0 = time.perf_counter()
    if runner is None:
        if extra:
            result = cast(CertifyingSuiteRun, suite.run)(run, quick=quick, seed=seed, cache_dir=cache,
                                                         on_event=on_event, **extra)
        else:
            result = suite.run(run, quick=quick, seed=seed, cache_dir=cache, on_event=on_event)
    else:
        result = runner(run, seed=seed, cache_dir=cache, on_event=on_event, **extra)
    run.set_metrics(seconds=round(time.perf_counter() - t0, 1))
    finish_suite(run, suite, result, quick=quick)
    render_report(run.path)
    return run


__all__ = ["PAPERS", "PaperFigure", "PaperSuite", "comparison_table", "run_paper"]
