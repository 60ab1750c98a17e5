"""MNIST from its original IDX files (LeCun et al. 1998; http://yann.lecun.com/exdb/mnist/ format).

Expected in ``data_dir`` (or ``data_dir/MNIST/raw``, torchvision's layout, or ``data_dir/mnist``),
each either plain or gzipped (``.gz``):

    train-images-idx3-ubyte   train-labels-idx1-ubyte   (60,000 images)
    t10k-images-idx3-ubyte    t10k-labels-idx1-ubyte    (10,000 images: the official test split)

The dotted names (``train-images.idx3-ubyte``) some mirrors use are accepted too. IDX: a 4-byte
magic ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian int32 sizes, then the data (type
``0x08`` = unsigned byte). Images ``(N, 1, 28, 28)`` in [0, 1]; normalisation mean 0.1307, std 0.3081.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ._io import assemble, local_dirs, read_bytes, require_file
from .base import DATASETS, ImageDataset

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
SUBDIRS = ("MNIST/raw", "mnist", "MNIST")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (gzipped or not) into an array of its declared shape and type.

    Raises:
        DataError: bad magic number, unknown type code, or a size that does not match the header.
    """
    raw = read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise DataError(f"{path}: unknown IDX data type 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: header says shape {shape} ({expected} bytes of data) but the file has "
                        f"{len(raw) - header} bytes of data (truncated or corrupt)")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _names(base: str) -> list[str]:
    dotted = base.replace("-idx", ".idx")
    return [base, base + ".gz", dotted, dotted + ".gz"]


def load_idx_pair(dirs: list[Path], images: str, labels: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one (images, labels) pair of IDX files; images ``(N, H, W)`` uint8, labels ``(N,)``."""
    x = read_idx(require_file(dirs, _names(images), what))
    y = read_idx(require_file(dirs, _names(labels), what))
    if x.ndim != 3 or x.dtype != np.uint8:
        raise DataError(f"{what}: {images} must hold (N, H, W) unsigned bytes, got shape {x.shape} {x.dtype}")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{what}: {len(x)} images in {images} but labels of shape {y.shape} in {labels}")
    return x, y


@DATASETS.register("mnist")
def load_mnist(data_dir: Path | None) -> ImageDataset:
    """MNIST train (60k) + official test (10k, marked ``official_test``): ``(70000, 1, 28, 28)``.

    Raises:
        DataError: a file is missing (the message names it) or corrupt.
    """
    _, dirs = local_dirs(data_dir, "mnist", SUBDIRS)
    parts = []
    for split, (img, lab) in FILES.items():
        xa, ya = load_idx_pair(dirs, img, lab, "mnist")
        parts.append((xa[:, None], ya, split == "test"))
    return assemble("mnist", parts, [str(i) for i in range(10)], MNIST_MEAN, MNIST_STD, str(data_dir), "idx")
