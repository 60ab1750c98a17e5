"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) from the files of https://www.cs.toronto.edu/~kriz/cifar.html.

Both versions are read; the python one wins when both are present. In ``data_dir`` itself or its
usual sub-folder:

* CIFAR-10 python (``cifar-10-batches-py/``): ``data_batch_1`` .. ``data_batch_5``, ``test_batch``
  (pickled dicts: ``data`` uint8 ``(10000, 3072)`` = R, G, B planes of 32x32 row-major; ``labels``),
  ``batches.meta`` (``label_names``, optional).
* CIFAR-10 binary (``cifar-10-batches-bin/``): ``data_batch_1.bin`` .. ``data_batch_5.bin``,
  ``test_batch.bin``; records of 1 label byte + 3072 pixel bytes; ``batches.meta.txt`` (optional).
* CIFAR-100 python (``cifar-100-python/``): ``train``, ``test`` (``data``, ``fine_labels``,
  ``coarse_labels``), ``meta`` (``fine_label_names``, ``coarse_label_names``, optional).
* CIFAR-100 binary (``cifar-100-binary/``): ``train.bin``, ``test.bin``; records of 1 coarse + 1 fine
  label byte + 3072 pixel bytes; ``fine_label_names.txt`` / ``coarse_label_names.txt`` (optional).

The pickles are read by a restricted unpickler (:mod:`._safe_pickle`) that only rebuilds numpy
arrays: a crafted batch cannot run code. Labels are CIFAR-100's **fine** labels (100 classes).
The ``test`` rows are marked ``official_test``. Normalisation: CIFAR-10 mean (0.4914, 0.4822,
0.4465), std (0.2023, 0.1994, 0.2010) (the values of Cohen et al. 2019 and ZO-AE-DS ``datasets.py``);
CIFAR-100 mean (0.5071, 0.4865, 0.4409), std (0.2673, 0.2564, 0.2762).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ._io import assemble, candidate_dirs, find_file, local_dirs, names_txt, read_bytes, require_file
from ._safe_pickle import safe_load
from .base import DATASETS, ImageDataset

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PIXELS = 3 * 32 * 32


def _images(data: Any, source: str) -> np.ndarray:
    arr = np.asarray(data)
    if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != PIXELS:
        raise DataError(f"{source}: 'data' must be uint8 of shape (N, {PIXELS}), got {arr.dtype} {arr.shape}")
    return arr.reshape(-1, 3, 32, 32)


def _python_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    d = safe_load(path)
    for key in ("data", label_key):
        if key not in d:
            raise DataError(f"{path}: missing key {key!r} (has {sorted(map(str, d))})")
    x = _images(d["data"], str(path))
    y = np.asarray(d[label_key])
    if len(y) != len(x):
        raise DataError(f"{path}: {len(x)} images but {len(y)} labels")
    return x, y


def _binary_batch(path: Path, label_bytes: int, label_index: int) -> tuple[np.ndarray, np.ndarray]:
    raw = np.frombuffer(read_bytes(path), dtype=np.uint8)
    rec = label_bytes + PIXELS
    if raw.size == 0 or raw.size % rec:
        raise DataError(f"{path}: size {raw.size} bytes is not a multiple of the {rec}-byte CIFAR record")
    raw = raw.reshape(-1, rec)
    return raw[:, label_bytes:].reshape(-1, 3, 32, 32), raw[:, label_index].copy()


def _text(v: object) -> str:
    return v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)


@DATASETS.register("cifar10")
def load_cifar10(data_dir: Path | None) -> ImageDataset:
    """CIFAR-10 train (50k) + official test (10k): ``(60000, 3, 32, 32)``, 10 classes.

    Raises:
        DataError: no CIFAR-10 files, a missing batch (named), a corrupt or unsafe file.
    """
    root, py_dirs = local_dirs(data_dir, "cifar10", ("cifar-10-batches-py",))
    train = [f"data_batch_{i}" for i in range(1, 6)]
    bin_dirs = candidate_dirs(root, ("cifar-10-batches-bin",))
    parts: list[tuple[np.ndarray, np.ndarray, bool]] = []
    if find_file(py_dirs, ["data_batch_1", "test_batch"]) is not None:
        for b in [*train, "test_batch"]:
            x, y = _python_batch(require_file(py_dirs, [b], "cifar10 (python version)"), "labels")
            parts.append((x, y, b == "test_batch"))
        meta = find_file(py_dirs, ["batches.meta"])
        names = safe_load(meta).get("label_names") if meta else None
        classes = [_text(c) for c in names] if names is not None and len(names) == 10 else list(CIFAR10_CLASSES)
        return assemble("cifar10", parts, classes, CIFAR10_MEAN, CIFAR10_STD, root, "python")
    if find_file(bin_dirs, ["data_batch_1.bin", "test_batch.bin"]) is not None:
        for b in [*train, "test_batch"]:
            x, y = _binary_batch(require_file(bin_dirs, [b + ".bin"], "cifar10 (binary version)"), 1, 0)
            parts.append((x, y, b == "test_batch"))
        classes = names_txt(find_file(bin_dirs, ["batches.meta.txt"]), 10) or list(CIFAR10_CLASSES)
        return assemble("cifar10", parts, classes, CIFAR10_MEAN, CIFAR10_STD, root, "binary")
    raise DataError(f"cifar10: no CIFAR-10 files in {root}: expected data_batch_1..5 and test_batch (python "
                    f"version, or a cifar-10-batches-py/ folder) or data_batch_1.bin..test_batch.bin (binary "
                    f"version, or cifar-10-batches-bin/)")


@DATASETS.register("cifar100")
def load_cifar100(data_dir: Path | None) -> ImageDataset:
    """CIFAR-100 train (50k) + official test (10k): ``(60000, 3, 32, 32)``, 100 fine classes.

    Raises:
        DataError: no CIFAR-100 files, a missing file (named), a corrupt or unsafe file.
    """
    root, py_dirs = local_dirs(data_dir, "cifar100", ("cifar-100-python",))
    bin_dirs = candidate_dirs(root, ("cifar-100-binary",))
    default = [str(i) for i in range(100)]
    parts: list[tuple[np.ndarray, np.ndarray, bool]] = []
    if find_file(py_dirs, ["train", "test"]) is not None:
        for split in ("train", "test"):
            x, y = _python_batch(require_file(py_dirs, [split], "cifar100 (python version)"), "fine_labels")
            parts.append((x, y, split == "test"))
        meta = find_file(py_dirs, ["meta"])
        names = safe_load(meta).get("fine_label_names") if meta else None
        classes = [_text(c) for c in names] if names is not None and len(names) == 100 else default
        return assemble("cifar100", parts, classes, CIFAR100_MEAN, CIFAR100_STD, root, "python")
    if find_file(bin_dirs, ["train.bin", "test.bin"]) is not None:
        for split in ("train", "test"):
            x, y = _binary_batch(require_file(bin_dirs, [split + ".bin"], "cifar100 (binary version)"), 2, 1)
            parts.append((x, y, split == "test"))
        classes = names_txt(find_file(bin_dirs, ["fine_label_names.txt"]), 100) or default
        return assemble("cifar100", parts, classes, CIFAR100_MEAN, CIFAR100_STD, root, "binary")
    raise DataError(f"cifar100: no CIFAR-100 files in {root}: expected train and test (python version, or a "
                    f"cifar-100-python/ folder) or train.bin and test.bin (binary version, or cifar-100-binary/)")
