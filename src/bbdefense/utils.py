"""Small shared helpers: device resolution, generators, environment."""

from __future__ import annotations

import platform
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported inside the functions: `bbdefense --help` must not import it
    import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Resolve ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda:0"``... once, at the edge."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


#: the largest seed: numpy's global generator takes 0 .. 2**32 - 1 (the CLI seeds it), so every seed
#: option and config field is bounded by it
SEED_MAX = 2**32 - 1


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device``, seeded with ``seed`` (or from OS entropy when None).

    Library code never seeds the global RNG; every stochastic component builds its own generator.
    """
    import torch

    g = torch.Generator(device=torch.device(device))
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


@contextmanager
def seeded_init(seed: int | None) -> Iterator[None]:
    """Build models reproducibly without touching the caller's RNG.

    torch's parameter initialisers draw from the global generator, so model construction is the
    one place that needs it seeded: this forks the global CPU RNG, seeds the fork with ``seed``
    (0 when None) and restores the caller's state on exit::

        with seeded_init(cfg.seed):
            model = build_model(...)
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0 if seed is None else int(seed))
        yield


def environment() -> dict[str, str]:
    """Versions and machine facts recorded in every run record."""
    import torch

    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": str(torch.cuda.is_available()),
        "threads": str(torch.get_num_threads()),
    }
    for pkg in ("bbdefense", "numpy", "scipy", "scikit-learn", "onnxruntime", "safetensors"):
        try:
            env[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            env[pkg] = "not installed"
    return env


#: the optional features of bbdefense: extra name -> what it enables (pyproject.toml [project.optional-dependencies])
EXTRAS = {"onnx": "ONNX export and the onnxruntime backend", "serve": "the HTTP service and remote black boxes",
          "ssim": "SSIM of reconstructions", "ray": "Ray execution of experiments"}


def require_extra(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``, or raise :class:`~bbdefense.errors.MissingExtraError` with one line
    naming ``pip install 'bbdefense[EXTRA]'`` (the lean core installs no optional package)."""
    import importlib

    from .errors import MissingExtraError

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"{feature} needs the '{extra}' extra ({module} is not installed): "
                                f"pip install 'bbdefense[{extra}]'") from exc


def open_sqlite(path: str, synchronous: str) -> sqlite3.Connection:
    """A SQLite connection for state that must survive the process (the server's keys and audit, the
    stateful detectors): autocommit (``isolation_level=None``), usable from the server's threads, a 30 s
    lock timeout, write-ahead logging for a file (``":memory:"`` has none), and ``synchronous`` (``NORMAL``
    survives ``kill -9`` of the process, ``FULL``/``EXTRA`` also a power loss). The parent folder is
    created. Raises ``sqlite3.Error``/``OSError`` (callers name the file in their own error) or
    :class:`~bbdefense.errors.InputError` for an unknown ``synchronous``."""
    from .errors import InputError

    sync = synchronous.upper()
    if sync not in ("NORMAL", "FULL", "EXTRA"):
        raise InputError(f"synchronous must be NORMAL, FULL or EXTRA, got {synchronous!r}")
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    if path != ":memory:":
        db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={sync}")
    return db
