"""Data: embedded datasets (no download), loaders for standard on-disk formats, and splits."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Any

from ..errors import DataError, InputError
from .base import DATASETS, ImageDataset, channel_stats
from .splits import Splits, corrupt, make_splits

for _m in pkgutil.iter_modules(__path__):
    if _m.name not in {"base", "splits"} and not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

EMBEDDED = ("mnist5k", "digits")


def load_dataset(name: str, data_dir: str | Path | None = None, **options: Any) -> ImageDataset:
    """Load dataset ``name`` (see :data:`DATASETS`). Embedded ones need no ``data_dir``; the
    others read their standard files from ``data_dir``. Nothing is ever downloaded.

    ``options`` are keyword options of the format's loader (e.g. ``image_size=32`` for
    ``imagefolder``, ``layout="nhwc"`` for ``npz``).

    Raises:
        UnknownNameError: ``name`` is not a known dataset.
        InputError: an option the loader does not take.
        DataError: ``data_dir`` is missing or its files are missing or corrupt.
    """
    loader = DATASETS[name]
    if options:
        params = inspect.signature(loader).parameters
        unknown = sorted(k for k in options if k not in params or k == "data_dir")
        if unknown:
            takes = sorted(k for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY)
            raise InputError(f"dataset {name!r} takes no option {', '.join(map(repr, unknown))}; "
                             f"its options: {', '.join(takes) or '(none)'}")
    if name not in EMBEDDED:
        if data_dir is None:
            raise DataError(f"dataset {name!r} is read from a local directory: pass --data-dir")
        data_dir = Path(data_dir)
        if not data_dir.exists():
            raise DataError(f"data directory not found: {data_dir}")
    return loader(Path(data_dir) if data_dir is not None else None, **options)

__all__ = ["DATASETS", "EMBEDDED", "ImageDataset", "Splits", "channel_stats", "corrupt", "load_dataset",
           "make_splits"]
