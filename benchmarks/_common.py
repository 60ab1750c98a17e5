"""The header every benchmark script shares: its command line, declared from keyword defaults, and torch's
thread count set from ``--threads`` before anything is timed. Not part of the library."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch


def bench_args(doc: str | None, *, threads: int,
               extra: Callable[[argparse.ArgumentParser], Any] | None = None, **defaults: Any) -> argparse.Namespace:
    """Parse ``sys.argv`` for a benchmark described by the first line of ``doc``: ``--threads`` (default
    ``threads``) and one ``--name`` option per keyword default (typed as its default; ``batch_size`` is
    ``--batch-size``); ``extra(parser)`` adds the options that need more (flags, help, lists). Sets
    ``torch.set_num_threads(args.threads)`` and returns the parsed arguments."""
    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    for name, default in {**defaults, "threads": threads}.items():
        ap.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    if extra is not None:
        extra(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    return args
