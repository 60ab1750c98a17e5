"""Shared CLI pieces: the consoles, progress bars fed by library events, global seeding, and the
``defend`` sub-command group that defense modules attach to."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..events import Event

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

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2**32 - 1:
        raise InputError(f"--seed must be an integer in [0, {2**32 - 1}], got {seed!r}")

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class ProgressEvents:
    """Turns library :class:`~bbdefense.events.Event` s into rich progress bars on stderr.

    The bars are started lazily, at the first event, so a command that fails before reporting
    progress prints only its one error line.
    """

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}
        self.started = False

    def __call__(self, ev: Event) -> None:
        if not self.started:
            self.progress.start()
            self.started = True
        if ev.kind == "start":
            self.tasks[ev.task] = self.progress.add_task(ev.message or ev.task, total=ev.total)
        elif ev.kind == "advance" and ev.task in self.tasks:
            self.progress.advance(self.tasks[ev.task], ev.n)
        elif ev.kind == "end" and ev.task in self.tasks:
            self.progress.remove_task(self.tasks.pop(ev.task))
        elif ev.kind == "info":
            self.progress.console.print(f"[dim]{ev.task}:[/dim] {ev.message}")


@contextmanager
def progress_events(enabled: bool = True) -> Iterator[ProgressEvents | None]:
    """Context giving an ``on_event`` callback that draws progress bars (None when disabled)."""
    if not enabled:
        yield None
        return
    prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console, transient=True)
    cb = ProgressEvents(prog)
    try:
        yield cb
    finally:
        if cb.started:
            prog.stop()
