"""Progress events. Library code reports progress through an optional ``on_event`` callback and
never prints; the CLI turns events into progress bars (on a terminal) or periodic log lines
(when stderr is a file or a pipe), see :mod:`bbdefense.cli.common`.

A long loop reports ``start`` with its ``total`` and ``unit`` (``"images"``, ``"batches"``,
``"epochs"``, ``"jobs"``...), one ``advance`` per step with ``n`` steps done and the ``queries``
those steps spent on a black box (0 when none), then ``end``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Event:
    """One progress event.

    ``kind`` is ``"start"`` (a task of ``total`` steps begins), ``"advance"`` (``n`` more steps done),
    ``"end"`` (the task finished) or ``"info"`` (a message worth showing). ``queries`` is the number
    of queries spent by the steps of an ``advance``; ``unit`` names the steps (set on ``start``).
    """

    kind: Literal["start", "advance", "end", "info"]
    task: str
    total: int | None = None
    n: int = 1
    message: str = ""
    queries: int = 0
    unit: str = ""


EventCallback = Callable[[Event], None]


def emit(cb: EventCallback | None, kind: Literal["start", "advance", "end", "info"], task: str, *,
         total: int | None = None, n: int = 1, message: str = "", queries: int = 0, unit: str = "") -> None:
    """Send an event (fields as in :class:`Event`) if a callback was given."""
    if cb is not None:
        cb(Event(kind, task, total=total, n=n, message=message, queries=queries, unit=unit))
