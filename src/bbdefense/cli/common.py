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


def seed_everything(seed: int) -> None:
    """The only place that seeds global RNGs (the CLI, once per command; the seed is recorded)."""
    import numpy as np
    import torch

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
