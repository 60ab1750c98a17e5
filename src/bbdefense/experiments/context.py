"""What the demo slices and the paper suites share, below both of them: the demo target recipe
(:data:`DEMO_ARCH`, :data:`DEMO_DATASET`, :data:`DEMO_TRAIN`), the :class:`DemoContext` a slice
receives and the slice registry (:data:`DEMO_SLICES`, :func:`register_slice`).

It lives apart from :mod:`.demo` (which loads the slices and runs them) so that a slice imports
this module and never :mod:`.demo`: no import cycle between the demo and its slices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data import Splits
from ..events import EventCallback
from ..models import BlackBox, OutputMode, WhiteBox
from ..records import RunDir
from ..registry import Registry
from ..training import TrainConfig

DEMO_ARCH = "smallcnn"
DEMO_DATASET = "mnist5k"
DEMO_TRAIN = TrainConfig(mode="plain", epochs=6, batch_size=64, lr=1e-3, seed=0)


@dataclass
class DemoContext:
    """What a slice gets: the run directory, the target, the data splits and the demo settings."""

    run: RunDir
    quick: bool
    seed: int
    target_path: Path
    target_meta: dict[str, Any]
    target_module: torch.nn.Module
    splits: Splits
    cache_dir: Path
    on_event: EventCallback | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.target_meta["input_shape"])

    def blackbox(self, *, output: OutputMode = "logits", budget: int | None = None, name: str = "target") -> BlackBox:
        """A fresh query-counted black box on the target (its own counters)."""
        return BlackBox.from_module(self.target_module, num_classes=self.target_meta["num_classes"],
                                    input_shape=self.input_shape, output=output, budget=budget, name=name)

    def whitebox(self) -> WhiteBox:
        return WhiteBox(self.target_module, num_classes=self.target_meta["num_classes"], input_shape=self.input_shape)

    def section(self, title: str, text: str = "") -> str:
        """Declare (or update) this slice's report section; returns its title for tables/plots."""
        secs = self.run.record.sections
        for s in secs:
            if s["title"] == title:
                s["text"] = text or s.get("text", "")
                break
        else:
            secs.append({"title": title, "text": text})
        self.run.save()
        return title


@dataclass(frozen=True)
class DemoSlice:
    """One slice of the demo: ``run(ctx)`` writes its tables/plots into ``ctx.run``."""

    name: str
    title: str
    order: int
    run: Callable[[DemoContext], None]
    quick: bool = True  # part of `demo --quick`


DEMO_SLICES: Registry[DemoSlice] = Registry("demo slice")


def register_slice(name: str, title: str, order: int, *, quick: bool = True
                   ) -> Callable[[Callable[[DemoContext], None]], Callable[[DemoContext], None]]:
    def deco(fn: Callable[[DemoContext], None]) -> Callable[[DemoContext], None]:
        DEMO_SLICES.add(name, DemoSlice(name, title, order, fn, quick))
        return fn

    return deco


__all__ = ["DEMO_ARCH", "DEMO_DATASET", "DEMO_SLICES", "DEMO_TRAIN", "DemoContext", "DemoSlice", "register_slice"]
