"""Arrays in a NumPy ``.npz`` file (read with ``allow_pickle=False``: no code can run).

``data_dir`` is the ``.npz`` file itself, or a folder holding ``data.npz`` or exactly one ``*.npz``.
Keys:

* ``x``: images ``(N, H, W)`` (one channel), ``(N, H, W, C)`` or ``(N, C, H, W)`` with ``C`` in {1, 3}
  (the layout is inferred from where the size-1/3 axis is; ``layout="nhwc"|"nchw"`` forces it);
  uint8 0..255 (any integer type within 0..255 is accepted) or float in [0, 1].
* ``y``: integer labels ``(N,)``.
* optional ``x_test`` / ``y_test``: an official test split (its rows are marked ``official_test``).
* optional ``classes``: class names (strings); default ``"0"`` .. ``str(max label)``.

The normalisation is the per-channel mean/std of ``x`` (not ``x_test``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import DataError, InputError
from ._io import concat_splits, labels_tensor, to_unit_float
from .base import DATASETS, ImageDataset, channel_stats

Layout = Literal["auto", "nhwc", "nchw"]


def _locate(data_dir: Path) -> Path:
    if data_dir.is_file():
        return data_dir
    if (data_dir / "data.npz").is_file():
        return data_dir / "data.npz"
    found = sorted(data_dir.glob("*.npz"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(f"npz: no .npz file in {data_dir} (expected {data_dir / 'data.npz'})")
    raise DataError(f"npz: {len(found)} .npz files in {data_dir} ({', '.join(p.name for p in found)}); "
                    f"pass the file itself or name it data.npz")


def to_nchw(x: np.ndarray, layout: Layout, source: str) -> np.ndarray:
    """``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` -> ``(N, C, H, W)`` (C in {1, 3}).

    Raises:
        DataError: other ranks, or no axis of size 1 or 3 where the layout needs one.
    """
    if x.ndim == 3:
        return x[:, None]
    if x.ndim != 4:
        raise DataError(f"{source}: images must be (N, H, W), (N, H, W, C) or (N, C, H, W), got shape {x.shape}")
    if layout == "auto":
        first, last = x.shape[1] in (1, 3), x.shape[3] in (1, 3)
        if first == last:
            raise DataError(f"{source}: cannot tell channels-first from channels-last in shape {x.shape}; "
                            f"pass layout='nchw' or 'nhwc'")
        layout = "nchw" if first else "nhwc"
    out = x if layout == "nchw" else x.transpose(0, 3, 1, 2)
    if out.shape[1] not in (1, 3):
        raise DataError(f"{source}: images must have 1 or 3 channels, got {out.shape[1]} (shape {x.shape}, "
                        f"layout {layout})")
    return np.ascontiguousarray(out)


@DATASETS.register("npz")
def load_npz(data_dir: Path | None, *, layout: Layout = "auto") -> ImageDataset:
    """Load ``x``/``y`` (and optional ``x_test``/``y_test``, ``classes``) from an ``.npz`` file.

    Raises:
        DataError: missing file or keys, corrupt file, object arrays, bad shapes, values or labels.
        InputError: an unknown ``layout``.
    """
    if data_dir is None:
        raise DataError("npz is read from a file or directory: pass data_dir")
    if layout not in ("auto", "nhwc", "nchw"):
        raise InputError(f"npz: layout must be 'auto', 'nhwc' or 'nchw', got {layout!r}")
    path = _locate(Path(data_dir))
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as exc:  # raised for object arrays (would need pickle) and bad zip members
        raise DataError(f"npz: cannot read {path}: {exc}") from exc
    except Exception as exc:  # BadZipFile, EOFError, OSError...
        raise DataError(f"npz: {path} is not a valid .npz file ({type(exc).__name__}: {exc})") from exc
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"npz: {path} lacks the array {key!r} (has {sorted(arrays)})")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"npz: {path} must have both 'x_test' and 'y_test' or neither (has {sorted(arrays)})")
    splits = [("x", "y", False)] + ([("x_test", "y_test", True)] if "x_test" in arrays else [])
    parts = []
    for xk, yk, is_test in splits:
        xa = to_nchw(arrays[xk], layout, f"npz {path.name}:{xk}")
        if len(arrays[yk]) != len(xa):
            raise DataError(f"npz: {path.name} has {len(xa)} images in {xk!r} but {len(arrays[yk])} labels "
                            f"in {yk!r}")
        src = f"npz {path.name}"
        parts.append((to_unit_float(xa, f"{src}:{xk}"), labels_tensor(arrays[yk], f"{src}:{yk}"), is_test))
    if len({p[0].shape[1:] for p in parts}) > 1:
        raise DataError(f"npz: x and x_test shapes differ: {[tuple(p[0].shape[1:]) for p in parts]}")
    x, y, official = concat_splits(parts)
    n_classes = int(y.max()) + 1 if len(y) else 0
    if "classes" in arrays:
        classes = [str(c) for c in arrays["classes"].tolist()]
        if len(classes) < n_classes:
            raise DataError(f"npz: {len(classes)} class names but label {n_classes - 1} occurs")
    else:
        classes = [str(i) for i in range(n_classes)]
    mean, std = channel_stats(parts[0][0])
    return ImageDataset("npz", x, y, classes, mean, std, official if len(splits) > 1 else None,
                        info={"source": str(path), "format": "npz"})
