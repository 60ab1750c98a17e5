"""SVHN, cropped digits (Netzer et al. 2011, http://ufldl.stanford.edu/housenumbers/ "Format 2").

Expected in ``data_dir`` (or ``data_dir/svhn``): ``train_32x32.mat`` and ``test_32x32.mat`` (MATLAB
files read with :func:`scipy.io.loadmat`, which runs no code), each with ``X`` uint8
``(32, 32, 3, N)`` and ``y`` ``(N, 1)`` in 1..10 where **10 means the digit 0** (mapped to label 0).
``extra_32x32.mat`` is ignored. Images ``(N, 3, 32, 32)``; the test rows are ``official_test``.
Normalisation: mean (0.4377, 0.4438, 0.4728), std (0.1980, 0.2010, 0.1970) (train-set statistics).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ._io import assemble, local_dirs, require_file
from .base import DATASETS, ImageDataset

SVHN_MEAN, SVHN_STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One ``*_32x32.mat`` file -> images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` in 0..9.

    Raises:
        DataError: unreadable file, missing ``X``/``y``, wrong shapes, labels outside 1..10.
    """
    from scipy.io import loadmat

    try:
        m = loadmat(str(path))
    except Exception as exc:  # scipy raises ValueError, MatReadError, OSError... on corrupt files
        raise DataError(f"cannot read SVHN file {path} ({type(exc).__name__}: {exc})") from exc
    if "X" not in m or "y" not in m:
        found = sorted(k for k in m if not k.startswith("__"))
        raise DataError(f"{path}: expected variables 'X' and 'y', found {found}")
    x, y = np.asarray(m["X"]), np.asarray(m["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise DataError(f"{path}: X must be (32, 32, 3, N) with N = len(y) = {len(y)}, got {x.shape}")
    if len(y) and (int(y.min()) < 1 or int(y.max()) > 10):
        raise DataError(f"{path}: SVHN labels must be in 1..10, got {int(y.min())}..{int(y.max())}")
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), (y.astype(np.int64) % 10)


@DATASETS.register("svhn")
def load_svhn(data_dir: Path | None) -> ImageDataset:
    """SVHN train (73,257) + official test (26,032): ``(N, 3, 32, 32)``, classes "0".."9".

    Raises:
        DataError: a missing file (named), an unreadable .mat file, no X/y variables or the wrong shapes.
    """
    _, dirs = local_dirs(data_dir, "svhn", ("svhn", "SVHN"))
    parts = [(*read_svhn_mat(require_file(dirs, [f"{split}_32x32.mat"], "svhn")), split == "test")
             for split in ("train", "test")]
    return assemble("svhn", parts, [str(i) for i in range(10)], SVHN_MEAN, SVHN_STD, str(data_dir), "mat")
