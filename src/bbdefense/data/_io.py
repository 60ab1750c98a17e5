"""File helpers shared by the on-disk loaders, and their common tail :func:`assemble` (registers no dataset)."""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .base import ImageDataset


def candidate_dirs(data_dir: Path, subdirs: Sequence[str]) -> list[Path]:
    """``data_dir`` itself, then each of ``data_dir / sub`` that exists (the layouts users have)."""
    return [data_dir] + [data_dir / s for s in subdirs if (data_dir / s).is_dir()]


def find_file(dirs: Sequence[Path], names: Sequence[str]) -> Path | None:
    """The first ``dir / name`` that is a file, trying every name in every dir (dirs first)."""
    for d in dirs:
        for n in names:
            if (d / n).is_file():
                return d / n
    return None


def require_file(dirs: Sequence[Path], names: Sequence[str], what: str) -> Path:
    """Like :func:`find_file`, but raise :class:`DataError` naming the file expected.

    Raises:
        DataError: none of ``names`` is in any of ``dirs``.
    """
    p = find_file(dirs, names)
    if p is None:
        where = " or ".join(str(d) for d in dirs)
        raise DataError(f"{what}: file {names[0]} not found in {where}")
    return p


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped if it ends in ``.gz``.

    Raises:
        DataError: the file cannot be read or is not valid gzip.
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def to_unit_float(x: np.ndarray, source: str) -> torch.Tensor:
    """uint8 0..255 (or another integer type within 0..255) -> float32 in [0, 1]; float arrays must
    already be in [0, 1]. Returns a contiguous tensor of the same shape.

    Raises:
        DataError: values outside the range of the dtype's convention, or a non-numeric dtype.
    """
    if x.dtype == np.uint8:
        return torch.from_numpy(x.astype(np.float32) / np.float32(255.0)).contiguous()
    if np.issubdtype(x.dtype, np.integer):
        lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
        if lo < 0 or hi > 255:
            raise DataError(f"{source}: integer pixels must be in 0..255, got {lo}..{hi}")
        return torch.from_numpy(x.astype(np.float32) / np.float32(255.0)).contiguous()
    if np.issubdtype(x.dtype, np.floating):
        arr = x.astype(np.float32)
        if arr.size and not np.isfinite(arr).all():
            raise DataError(f"{source}: float pixels contain NaN or inf")
        flo, fhi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if flo < 0 or fhi > 1:
            raise DataError(f"{source}: float pixels must be in [0, 1], got {flo:.4g}..{fhi:.4g}")
        return torch.from_numpy(arr).contiguous()
    raise DataError(f"{source}: pixels must be uint8 or float, got dtype {x.dtype}")


def labels_tensor(y: np.ndarray, source: str, *, num_classes: int | None = None) -> torch.Tensor:
    """Integer labels ``(N,)`` (or ``(N, 1)``) -> int64 tensor, checked to be in ``[0, num_classes)``.

    Raises:
        DataError: non-integer labels, wrong shape, or labels out of range.
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{source}: labels must have shape (N,), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and y.size and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        elif y.size:
            raise DataError(f"{source}: labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.size and int(y.min()) < 0:
        raise DataError(f"{source}: labels must be >= 0, got {int(y.min())}")
    if num_classes is not None and y.size and int(y.max()) >= num_classes:
        raise DataError(f"{source}: label {int(y.max())} outside [0, {num_classes})")
    return torch.from_numpy(y.copy())


def concat_splits(parts: Sequence[tuple[torch.Tensor, torch.Tensor, bool]]) -> tuple[torch.Tensor, torch.Tensor,
                                                                                     torch.Tensor]:
    """Concatenate ``(x, y, is_official_test)`` parts into ``(x, y, official_test mask)``."""
    xs = [p[0] for p in parts]
    ys = [p[1] for p in parts]
    mask = torch.cat([torch.full((len(p[1]),), p[2], dtype=torch.bool) for p in parts])
    return torch.cat(xs), torch.cat(ys), mask


def local_dirs(data_dir: Path | str | None, name: str, subdirs: Sequence[str]) -> tuple[Path, list[Path]]:
    """The folder an on-disk dataset ``name`` is read from and its :func:`candidate_dirs` (``subdirs``).

    Raises:
        DataError: ``data_dir`` is None.
    """
    if data_dir is None:
        raise DataError(f"{name} is read from a local directory: pass data_dir")
    root = Path(data_dir)
    return root, candidate_dirs(root, subdirs)


def names_txt(path: Path | None, n: int) -> list[str] | None:
    """The class names in a text file, one a line (blank lines skipped); None without a file or unless
    it names exactly ``n`` classes."""
    if path is None:
        return None
    names = [s.strip() for s in path.read_text(errors="replace").splitlines() if s.strip()]
    return names if len(names) == n else None


def assemble(name: str, parts: Sequence[tuple[np.ndarray, np.ndarray, bool]], classes: list[str],
             mean: tuple[float, ...], std: tuple[float, ...], source: Path | str, fmt: str) -> ImageDataset:
    """The one tail of the on-disk loaders: ``(images uint8 (N, C, H, W), labels 0..K-1, is_official_test)``
    parts -> one :class:`ImageDataset` (pixels in [0, 1], int64 labels checked against ``len(classes)``,
    the official-test mask, ``info`` naming the source folder and the file format)."""
    k = len(classes)
    tensors = [(to_unit_float(x, name), labels_tensor(y, name, num_classes=k), test) for x, y, test in parts]
    x, y, official = concat_splits(tensors)
    return ImageDataset(name, x, y, classes, mean, std, official, info={"source": str(source), "format": fmt})
