"""Shared CLI pieces: the consoles, progress bars fed by library events, global seeding, the
``defend`` sub-command group that defense modules attach to, and option groups (options several commands
share, declared once: :class:`OptionGroup`, :func:`with_option_groups`)."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import random
import time
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ..events import Event
from . import options as opt

console = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

# `bbdefense defend <method> ...`: each defense module adds its command here.
defend_app = typer.Typer(help="Build and evaluate a defense (see `bbdefense defend --help`).", no_args_is_help=True,
                         add_completion=False)


def parse_options(items: list[str] | None, what: str = "--data-option") -> dict[str, object]:
    """``["image_size=64", "layout=nhwc"]`` -> ``{"image_size": 64, "layout": "nhwc"}`` (ints, floats, booleans
    and strings)."""
    from ..errors import InputError

    opts: dict[str, object] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InputError(f"{what} expects KEY=VALUE, got {item!r}")
        value: object = raw
        for conv in (int, float):
            try:
                value = conv(raw)
                break
            except ValueError:
                pass
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        opts[key] = value
    return opts


def seed_everything(seed: int) -> None:
    """The only place that seeds global RNGs (the CLI, once per command; the seed is recorded). A seed
    outside numpy's range [0, 2**32 - 1] is an InputError (commands declare ``--seed`` with
    ``options.seed_option``)."""
    import numpy as np
    import torch

    from ..errors import InputError
    from ..utils import SEED_MAX

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise InputError(f"--seed must be an integer in [0, {SEED_MAX}], got {seed!r}")

    random.seed(seed)
    # Seeding numpy's legacy global RNG is the point here: it covers third-party code that draws from it (library
    # code never does; it builds its own seeded generators).
    np.random.seed(seed)  # noqa: NPY002
    torch.manual_seed(seed)


class _QueriesColumn(ProgressColumn):
    """``12,345 queries`` for tasks whose events report queries (blank otherwise)."""

    def render(self, task: Any) -> Text:
        q = int(task.fields.get("queries", 0))
        return Text(f"{q:,} queries" if q else "", style="progress.data.speed")


class ProgressEvents:
    """Turns library :class:`~bbdefense.events.Event` s into rich progress bars on stderr (a terminal):
    steps done of the total, queries spent, elapsed time and ETA.

    The bars are started lazily, at the first event, so a command that fails before reporting
    progress prints only its one error line.
    """

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}
        self.queries: dict[str, int] = {}
        self.started = False

    def __call__(self, ev: Event) -> None:
        if not self.started:
            self.progress.start()
            self.started = True
        if ev.kind == "start":
            desc = ev.message or ev.task
            self.tasks[ev.task] = self.progress.add_task(f"{desc} ({ev.unit})" if ev.unit else desc, total=ev.total,
                                                         queries=0)
            self.queries[ev.task] = 0
        elif ev.kind == "advance" and ev.task in self.tasks:
            self.queries[ev.task] += ev.queries
            self.progress.update(self.tasks[ev.task], advance=ev.n, queries=self.queries[ev.task])
        elif ev.kind == "end" and ev.task in self.tasks:
            self.progress.remove_task(self.tasks.pop(ev.task))
            self.queries.pop(ev.task, None)
        elif ev.kind == "info":
            self.progress.console.print(f"[dim]{ev.task}:[/dim] {ev.message}")


def format_duration(seconds: float) -> str:
    """``42s``, ``1m12s``, ``2h05m``."""
    s = max(round(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


@dataclass
class _TaskLog:
    label: str
    total: int | None
    unit: str
    t0: float
    last: float
    done: int = 0
    queries: int = 0
    printed: bool = False


class LogProgress:
    """Progress as plain periodic lines, for a stderr that is not a terminal (a pipe, a log file, a CI job).

    At most one line every ``interval`` seconds, describing every running task (outermost first,
    ``" | "`` between nested ones), e.g. ``certify: 40/100 images, 20,000 queries, 1m12s elapsed, ETA
    1m48s`` (ETA = elapsed / done * remaining steps), and a final ``...: done, ...`` line for an
    outermost task that ran at least ``interval``. Commands shorter than ``interval`` print nothing, so
    quick commands (and their one-line errors) stay quiet. ``info`` events are printed as they come.
    ``clock`` is injectable for tests.
    """

    def __init__(self, write: Callable[[str], None], *, interval: float = 15.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.write, self.interval, self.clock = write, float(interval), clock
        self.tasks: dict[str, _TaskLog] = {}
        self.last: float | None = None

    def line(self, st: _TaskLog, now: float, *, final: bool = False) -> str:
        unit = f" {st.unit}" if st.unit else ""
        count = f"{st.done:,}/{st.total:,}{unit}" if st.total is not None else f"{st.done:,}{unit}"
        parts = [count]
        if st.queries:
            parts.append(f"{st.queries:,} queries")
        elapsed = now - st.t0
        parts.append(f"{format_duration(elapsed)} elapsed")
        if final:
            return f"{st.label}: done, " + ", ".join(parts)
        if st.total is not None and 0 < st.done <= st.total:
            parts.append(f"ETA {format_duration(elapsed / st.done * (st.total - st.done))}")
        return f"{st.label}: " + ", ".join(parts)

    def __call__(self, ev: Event) -> None:
        now = self.clock()
        if ev.kind == "start":
            self.tasks[ev.task] = _TaskLog(ev.message or ev.task, ev.total, ev.unit, now, now)
            if self.last is None:
                self.last = now
        elif ev.kind == "advance" and ev.task in self.tasks:
            st = self.tasks[ev.task]
            st.done += ev.n
            st.queries += ev.queries
            if self.last is not None and now - self.last >= self.interval:
                self.write(" | ".join(self.line(t, now) for t in self.tasks.values()))
                self.last = now
                for t in self.tasks.values():
                    t.printed = True
        elif ev.kind == "end" and ev.task in self.tasks:
            outer = next(iter(self.tasks)) == ev.task
            st = self.tasks.pop(ev.task)
            if outer and (st.printed or now - st.t0 >= self.interval):
                self.write(self.line(st, now, final=True))
            if not self.tasks:
                self.last = None
        elif ev.kind == "info":
            self.write(f"{ev.task}: {ev.message}")


@contextmanager
def progress_events(enabled: bool = True, *, interval: float | None = None) -> Iterator[Any]:
    """Context giving an ``on_event`` callback (None when disabled): progress bars with queries and ETA
    when stderr is a terminal, else periodic plain log lines (:class:`LogProgress`, every ``interval``
    seconds; default ``BBDEFENSE_PROGRESS_INTERVAL`` or 15)."""
    if not enabled:
        yield None
        return
    if not console.is_terminal:
        every = interval if interval is not None else float(os.environ.get("BBDEFENSE_PROGRESS_INTERVAL", "15"))
        yield LogProgress(lambda line: console.print(line, markup=False, highlight=False), interval=every)
        return
    prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _QueriesColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True)
    cb = ProgressEvents(prog)
    try:
        yield cb
    finally:
        if cb.started:
            prog.stop()


# ---------------------------------------------------------------- option groups: options several commands share
class OptionGroup:
    """Base of an option group: a frozen dataclass whose fields' defaults are typer options, declared once
    and shared by several commands. A command decorated with :func:`with_option_groups` takes the group as one
    keyword-only parameter annotated with its class; typer sees the group's options in its place."""


G = TypeVar("G", bound=Callable[..., Any])


def with_option_groups(func: G) -> G:
    """Expand each keyword-only parameter of ``func`` annotated with an :class:`OptionGroup` subclass into that
    group's options (typer reads ``__signature__``), and pack the parsed values back into one group object when
    the command runs. Annotations are resolved in ``func``'s module, as typer itself does."""
    sig = inspect.signature(func, eval_str=True)
    params: list[inspect.Parameter] = []
    groups: dict[str, tuple[type, tuple[str, ...]]] = {}
    for p in sig.parameters.values():
        cls = p.annotation
        if isinstance(cls, type) and issubclass(cls, OptionGroup) and dataclasses.is_dataclass(cls):
            if p.kind is not inspect.Parameter.KEYWORD_ONLY:
                raise TypeError(f"{func.__name__}: the option group {p.name!r} must be keyword-only")
            hints = typing.get_type_hints(cls)
            fields = dataclasses.fields(cls)
            groups[p.name] = (cls, tuple(f.name for f in fields))
            params += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                         annotation=hints[f.name]) for f in fields]
        else:
            params.append(p)

    @functools.wraps(func)
    def command(**kwargs: Any) -> Any:
        for name, (cls, names) in groups.items():
            kwargs[name] = cls(**{n: kwargs.pop(n) for n in names})
        return func(**kwargs)

    new = sig.replace(parameters=params)
    command.__signature__ = new  # type: ignore[attr-defined]  # typer reads the expanded signature
    command.__annotations__ = {p.name: p.annotation for p in params} | {"return": sig.return_annotation}
    return cast(G, command)


@dataclass(frozen=True)
class RunOptions(OptionGroup):
    """What a resumable run command shares: keep the rows already in its run directory, the seed, progress."""

    resume: bool = typer.Option(True, "--resume/--no-resume")
    seed: int = opt.seed_option()
    progress: bool = typer.Option(True, "--progress/--no-progress")


@dataclass(frozen=True)
class CertifyRunOptions(OptionGroup):
    """What a command that fits a denoised-smoothing defense on the defender split and certifies it with
    Cohen's CERTIFY shares (``defend zo-ae-ds``, ``defend irs``): sizes, CERTIFY's n0/n/alpha, the data, the
    split seed, the query budget, the seed and progress."""

    n_train: int = opt.count_option(1000, "--n-train", help="Defender-split images the defense is trained on.")
    n_test: int = opt.count_option(50, "--n-test", help="Test images certified.")
    n0: int = opt.count_option(100, "--n0", help="CERTIFY's selection samples per image.")
    n: int = opt.count_option(10_000, "--n", help="CERTIFY's estimation samples per image.")
    alpha: float = opt.fraction_option(0.001, "--alpha", help="CERTIFY's failure probability.")
    data_dir: Path | None = opt.data_dir_option()
    split_seed: int | None = opt.split_seed_option()
    budget: int | None = opt.budget_option(None, "Queries the black box may answer in all (training and "
                                                 "certification); QueryBudgetExceeded beyond.")
    seed: int = opt.seed_option()
    progress: bool = typer.Option(True, "--progress/--no-progress")
