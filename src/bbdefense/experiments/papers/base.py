"""What a paper suite is: its paper's own figures as data, and the "paper vs ours" table.

A :class:`PaperSuite` reproduces one paper's tables at this machine's scale in a resumable run
directory (:class:`~bbdefense.records.RunDir`). Its :class:`PaperFigure` s are numbers copied from
the paper (each cites the table it comes from; a figure the paper does not give is not invented:
it is simply absent); :func:`comparison_table` puts each of them beside our figure for the same
method and metric, with both settings (dataset, model, images, n, sigma, budget...) in the row.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ...events import EventCallback
from ...records import RunDir, table

if TYPE_CHECKING:
    from ...evaluation.distributed import RayOptions


@dataclass(frozen=True)
class PaperFigure:
    """One number of the paper, and the key of ours it is compared with.

    Attributes:
        table: where the paper gives it, as the paper numbers it (``"Table 2"``, ``"TABLE IV"``).
        method: the paper's row (method, model or defense).
        metric: the paper's column (``"Square@1000"``, ``"CA r=0.5"``...).
        value: the paper's figure, in the paper's unit (percent unless ``unit`` says otherwise).
        setting: the paper's setting for this figure (dataset, model, images, n...).
        ours: key of our figure in the mapping a suite's run returns (see :func:`comparison_table`).
        unit: ``"%"`` (ours, a fraction, is shown x100) or any other unit (``"fraction"``, ``"score"``,
            ``"RMSE"``...): ours is shown as is.
    """

    table: str
    method: str
    metric: str
    value: float
    setting: str
    ours: str
    unit: str = "%"


class SuiteRun(Protocol):
    def __call__(self, run: RunDir, *, quick: bool, seed: int, cache_dir: Path,
                 on_event: EventCallback | None = None) -> dict[str, Any]: ...


class CertifyingSuiteRun(Protocol):
    """The ``run`` of a suite that certifies (``PaperSuite.certifies``): also takes ``ray`` (its
    certification on Ray workers, :func:`bbdefense.evaluation.distributed.certify_smooth_rows`) and
    ``method`` (``"cohen"`` | ``"sequential"``; None: the suite's own, cohen)."""

    def __call__(self, run: RunDir, *, quick: bool, seed: int, cache_dir: Path,
                 on_event: EventCallback | None = None, ray: RayOptions | None = None,
                 method: str | None = None) -> dict[str, Any]: ...


@dataclass(frozen=True)
class PaperSuite:
    """A paper reproduced as an experiment.

    ``run(run, quick=, seed=, cache_dir=, on_event=)`` writes its tables into ``run`` (rows
    streamed, so a rerun resumes) and returns ``{"ours": {key: value}, "settings": {table: text}}``:
    our figures under the keys that :attr:`figures` name, and our setting per paper table. A suite that
    ``certifies`` (randomized smoothing) takes ``ray=`` and ``method=`` too (:class:`CertifyingSuiteRun`).
    """

    name: str
    title: str
    citation: str
    tables: tuple[str, ...]
    figures: tuple[PaperFigure, ...]
    run: SuiteRun
    quick_time: str = ""
    full_time: str = ""
    docs: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    certifies: bool = False


def catalog_suite(name: str, *, figures: tuple[PaperFigure, ...], run: SuiteRun,
                  certifies: bool = False) -> PaperSuite:
    """Suite ``name`` as the catalog ``suites.toml`` (next to this module, the one home of every suite's title,
    citation, paper tables, measured times and docs) describes it, with the suite module's paper ``figures``
    and its ``run`` (a :class:`CertifyingSuiteRun` when ``certifies``: it takes ``ray`` and ``method``)."""
    entry = tomllib.loads(files(__package__).joinpath("suites.toml").read_text(encoding="utf-8"))[name]
    return PaperSuite(name=name, figures=figures, run=run, certifies=certifies,
                      **{**entry, "tables": tuple(entry["tables"])})


def _ours(v: Any, unit: str) -> float | None:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return round(100 * float(v), 2) if unit == "%" else round(float(v), 4)


def comparison_table(suite: PaperSuite, ours: Mapping[str, Any], settings: Mapping[str, str]) -> dict[str, Any]:
    """The "paper vs ours" table: one row per paper figure, our figure beside it, both settings.

    ``ours[fig.ours]`` is our value (a fraction for percentages; missing -> "-", e.g. a variant the
    quick run skips); ``settings[fig.table]`` our setting for that paper table."""
    rows = [[f.table, f.method, f.metric, f.value, _ours(ours.get(f.ours), f.unit), f.unit,
             f.setting, settings.get(f.table, "")] for f in suite.figures]
    return table(f"{suite.title}: the paper's figures beside ours",
                 ["paper table", "method", "metric", "paper", "ours", "unit", "paper setting", "our setting"], rows,
                 f"{suite.citation}. Paper figures copied from the paper (no figure is invented: a cell the paper "
                 "does not give is absent); ours from this run (\"-\": not run at this scale). The settings differ "
                 "as each row says; read the comparison as the paper's shape (orderings, gaps), not its level.")


def finish_suite(run: RunDir, suite: PaperSuite, result: Mapping[str, Any], *, quick: bool) -> None:
    """Add the comparison table first in the report (section "Paper vs ours") and close the run."""
    sec = "Paper vs ours"
    others = [s for s in run.record.sections if s.get("title") != sec]
    run.record.sections = [{"title": sec, "text": f"{suite.citation}. Suite `{suite.name}`"
                            f"{' (quick)' if quick else ''}; the paper's figures beside ours, per table."}, *others]
    run.add_table({**comparison_table(suite, result.get("ours", {}), result.get("settings", {})), "section": sec})
    run.finish()

