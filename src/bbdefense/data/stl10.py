"""STL-10 (Coates, Lee & Ng 2011, https://cs.stanford.edu/~acoates/stl10/), binary version.

Expected in ``data_dir`` (or ``data_dir/stl10_binary``): ``train_X.bin``, ``train_y.bin`` (5,000
images), ``test_X.bin``, ``test_y.bin`` (8,000 images; ``official_test``), optionally
``class_names.txt``. ``*_X.bin`` is raw uint8, each image 3 x 96 x 96 stored **column-major** per
channel (so an image is read as ``(3, 96, 96)`` and transposed to ``(3, H, W)``); ``*_y.bin`` is one
byte per image with labels **1..10** (mapped to 0..9). The unlabeled split is ignored.
Normalisation: mean (0.4467, 0.4398, 0.4066), std (0.2603, 0.2566, 0.2713) (train-set statistics;
ZO-AE-DS's ``datasets.py`` uses mean 0 / std 1 for STL-10, i.e. no normalisation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ._io import assemble, find_file, local_dirs, names_txt, read_bytes, require_file
from .base import DATASETS, ImageDataset

STL10_MEAN, STL10_STD = (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)
STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
SIZE = 96
IMAGE_BYTES = 3 * SIZE * SIZE


def read_stl10_split(x_path: Path, y_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``*_X.bin`` + ``*_y.bin`` -> images ``(N, 3, 96, 96)`` uint8 (row-major) and labels 0..9.

    Raises:
        DataError: sizes that do not fit whole images, image/label counts that differ, labels outside 1..10.
    """
    raw = np.frombuffer(read_bytes(x_path), dtype=np.uint8)
    if raw.size == 0 or raw.size % IMAGE_BYTES:
        raise DataError(f"{x_path}: size {raw.size} bytes is not a multiple of one 3x96x96 image ({IMAGE_BYTES})")
    x = np.ascontiguousarray(raw.reshape(-1, 3, SIZE, SIZE).transpose(0, 1, 3, 2))
    y = np.frombuffer(read_bytes(y_path), dtype=np.uint8).astype(np.int64)
    if len(y) != len(x):
        raise DataError(f"{y_path}: {len(y)} labels for {len(x)} images in {x_path.name}")
    if len(y) and (int(y.min()) < 1 or int(y.max()) > 10):
        raise DataError(f"{y_path}: STL-10 labels must be in 1..10, got {int(y.min())}..{int(y.max())}")
    return x, y - 1


@DATASETS.register("stl10")
def load_stl10(data_dir: Path | None) -> ImageDataset:
    """STL-10 train (5,000) + official test (8,000): ``(13000, 3, 96, 96)``, 10 classes.

    Raises:
        DataError: a missing file (named), a size that is not whole images, labels outside 1..10.
    """
    _, dirs = local_dirs(data_dir, "stl10", ("stl10_binary", "stl10"))
    parts = [(*read_stl10_split(require_file(dirs, [f"{split}_X.bin"], "stl10"),
                                require_file(dirs, [f"{split}_y.bin"], "stl10")), split == "test")
             for split in ("train", "test")]
    classes = names_txt(find_file(dirs, ["class_names.txt"]), 10) or list(STL10_CLASSES)
    return assemble("stl10", parts, classes, STL10_MEAN, STL10_STD, str(data_dir), "binary")
