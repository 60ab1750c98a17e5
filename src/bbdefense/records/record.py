"""Run records: the spine that every command, experiment and report plugs into.

A run directory holds

* ``record.json``: a :class:`RunRecord` (``schema_version``, kind, config, environment, seeds,
  metrics, tables, plots, checks, artifacts, status), rewritten atomically whenever it changes;
* ``rows/NAME.jsonl``: per-example rows, appended and flushed one line at a time
  (:class:`RowWriter`), so an interrupted run loses nothing and a resumed run neither loses nor
  duplicates rows.

Reports (:mod:`bbdefense.records.report`) are pure functions of these files.

Tables and plots are stored as data, not pictures:

* a table: ``{"title", "columns": [...], "rows": [[...], ...], "caption"}``
* a plot: ``{"title", "kind": "line"|"bar", "xlabel", "ylabel", "xscale", "series": [{"label", "x", "y"}]}``,
  optionally ``"yscale"``, ``"xlim"``/``"ylim"`` (``[lo, hi]``; an accuracy axis defaults to ``[0, 1]``),
  ``"refs"`` (reference lines ``{"label", "x", "y", "style"}``, e.g. chance) and ``"shade_x"`` (``[lo, hi]``:
  an x range drawn grey, e.g. FPRs below the resolution of a ROC curve)
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..utils import environment

SCHEMA_VERSION = 1


def _clean(obj: Any) -> Any:
    """JSON-safe copy: numbers stay numbers (NaN/inf become None), tensors become lists."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _clean(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


@dataclass
class Check:
    """A sanity check recorded with a run (randomized outputs, abstain rate, budget exhausted...)."""

    name: str
    passed: bool
    message: str


@dataclass
class RunRecord:
    kind: str
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    seeds: dict[str, int | None] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    tables: list[dict[str, Any]] = field(default_factory=list)
    plots: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    sections: list[dict[str, Any]] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=environment)
    status: str = "running"
    started: float = field(default_factory=time.time)
    finished: float | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _clean(asdict(self))
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        if d.get("schema_version", 0) > SCHEMA_VERSION:
            raise ConfigError(f"record schema_version {d.get('schema_version')} is newer than {SCHEMA_VERSION}")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def table(title: str, columns: list[str], rows: Iterable[Iterable[Any]], caption: str = "") -> dict[str, Any]:
    """A table as data (see module docstring)."""
    return {"title": title, "columns": list(columns), "rows": [list(r) for r in rows], "caption": caption}


def line_plot(title: str, series: list[dict[str, Any]], *, xlabel: str, ylabel: str, xscale: str = "linear",
              kind: str = "line", **extra: Any) -> dict[str, Any]:
    """A plot as data: ``series = [{"label": ..., "x": [...], "y": [...]}, ...]``; ``extra``: the optional
    keys of the module docstring (``yscale``, ``xlim``, ``ylim``, ``refs``, ``shade_x``)."""
    return {"title": title, "kind": kind, "xlabel": xlabel, "ylabel": ylabel, "xscale": xscale, "series": series,
            **extra}


class RunDir:
    """A run directory: ``record.json`` + ``rows/*.jsonl``.

    ``RunDir(path, kind=..., name=..., config=...)`` creates or reopens it. Reopening with a
    different config raises :class:`ConfigError` unless ``resume=False`` (which starts afresh),
    following AutoAttack's refusal to resume an evaluation under another config.
    """

    def __init__(self, path: str | Path, *, kind: str, name: str | None = None,
                 config: dict[str, Any] | None = None, seeds: dict[str, int | None] | None = None,
                 resume: bool = True) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "rows").mkdir(exist_ok=True)
        cfg = _clean(config or {})
        rec_path = self.path / "record.json"
        if resume and rec_path.is_file():
            try:
                old = RunRecord.from_dict(json.loads(rec_path.read_text()))
            except (json.JSONDecodeError, TypeError) as exc:
                raise ConfigError(f"cannot resume: {rec_path} is corrupt ({exc}); use a new directory") from exc
            if old.kind != kind or old.config != cfg:
                raise ConfigError(f"cannot resume {self.path}: it holds a {old.kind!r} run with another config; "
                                  "use a new --out directory or --no-resume")
            self.record = old
            self.record.status = "running"
            self.resumed = True
        else:
            if not resume:
                for f in (self.path / "rows").glob("*.jsonl"):
                    f.unlink()
            self.record = RunRecord(kind=kind, name=name or kind, config=cfg, seeds=dict(seeds or {}))
            self.resumed = False
        self.save()

    def rows(self, name: str, key: str = "idx") -> RowWriter:
        """The row stream ``rows/NAME.jsonl`` (resuming: rows already written are kept)."""
        w = RowWriter(self.path / "rows" / f"{name}.jsonl", key=key)
        self.record.artifacts[name] = f"rows/{name}.jsonl"
        return w

    def save(self) -> None:
        """Atomically rewrite ``record.json``."""
        tmp = self.path / "record.json.tmp"
        tmp.write_text(json.dumps(self.record.to_dict(), indent=2))
        os.replace(tmp, self.path / "record.json")

    def add_table(self, t: dict[str, Any]) -> None:
        self.record.tables = [x for x in self.record.tables if x.get("title") != t["title"]] + [_clean(t)]
        self.save()

    def add_plot(self, p: dict[str, Any]) -> None:
        self.record.plots = [x for x in self.record.plots if x.get("title") != p["title"]] + [_clean(p)]
        self.save()

    def add_check(self, name: str, passed: bool, message: str) -> None:
        self.record.checks = [c for c in self.record.checks if c.get("name") != name]
        self.record.checks.append(asdict(Check(name, bool(passed), message)))
        self.save()

    def set_metrics(self, **metrics: Any) -> None:
        self.record.metrics.update(_clean(metrics))
        self.save()

    def finish(self, status: str = "complete") -> None:
        self.record.status = status
        self.record.finished = time.time()
        self.save()


class RowWriter:
    """Append-only JSONL rows, one per example, flushed (and fsynced) as written.

    On open, existing rows are read back; a torn last line (a kill mid-write) is truncated away.
    :attr:`done` holds the keys already written, so a resumed loop skips them, and :meth:`write`
    refuses a duplicate key, so a resume can never duplicate a row.
    """

    def __init__(self, path: str | Path, *, key: str = "idx", fsync: bool = True) -> None:
        self.path = Path(path)
        self.key = key
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: set[Any] = set()
        self._recover()
        self._fh = self.path.open("a", encoding="utf-8")

    def _recover(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        good_end = 0
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:
                break  # torn last line
            line = data[pos:nl]
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break
            self.done.add(_hashable(row.get(self.key)))
            pos = nl + 1
            good_end = pos
        if good_end < len(data):
            with self.path.open("r+b") as f:
                f.truncate(good_end)

    def write(self, row: dict[str, Any]) -> bool:
        """Append ``row``; returns False (and writes nothing) if its key was already written."""
        k = _hashable(row.get(self.key))
        if k in self.done:
            return False
        self._fh.write(json.dumps(_clean(row)) + "\n")
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())
        self.done.add(k)
        return True

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def read_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file (a torn last line is skipped)."""
    p = Path(path)
    if not p.exists():
        return
    with p.open(encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            yield json.loads(line)


def load_record(run_dir: str | Path) -> RunRecord:
    p = Path(run_dir) / "record.json"
    if not p.is_file():
        raise ConfigError(f"no record.json in {run_dir}")
    try:
        return RunRecord.from_dict(json.loads(p.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ConfigError(f"{p} is not a valid run record: {exc}") from exc
