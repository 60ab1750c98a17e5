"""A folder of images, one sub-folder per class (the torchvision ``ImageFolder`` layout), read with PIL.

Layouts accepted in ``data_dir``:

    <class>/*.png|jpg|jpeg|bmp|gif|tif|tiff|webp          (no official test split), or
    train/<class>/*  and  test/<class>/*                 (the ``test`` rows are ``official_test``)

Classes are the sub-folder names, **sorted**; label ``i`` is ``classes[i]``. Hidden files and
folders are skipped; files are read in sorted order, so the dataset is deterministic. All images
must have one size unless ``image_size`` is given, in which case each is resized to
``image_size x image_size`` (bilinear). Images are 1-channel if every file is greyscale, else RGB
(alpha dropped); ``channels=1|3`` forces one. The normalisation is the per-channel mean/std of the
non-test images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ._io import concat_splits
from .base import DATASETS, ImageDataset, channel_stats

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in EXTENSIONS)


def _read(path: Path, image_size: int | None, mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as f:
            im = f.convert(mode)
            if image_size is not None and im.size != (image_size, image_size):
                im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _is_grey(path: Path) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.mode in ("1", "L", "I", "I;16", "F")
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc


def _scan(root: Path, classes: list[str] | None) -> tuple[list[str], list[tuple[Path, int]]]:
    dirs = _class_dirs(root)
    names = [d.name for d in dirs]
    if classes is None:
        classes = names
    else:
        extra = sorted(set(names) - set(classes))
        if extra:
            raise DataError(f"imagefolder: {root} has classes {extra} that the train folder does not have")
    items = [(f, classes.index(d.name)) for d in dirs for f in _files(d)]
    return classes, items


@DATASETS.register("imagefolder")
def load_imagefolder(data_dir: Path | None, *, image_size: int | None = None,
                     channels: int | None = None) -> ImageDataset:
    """Read ``data_dir`` as an image folder (see the module docstring for the layouts).

    Args:
        data_dir: the root folder.
        image_size: resize every image to this square size; ``None`` requires one common size.
        channels: force 1 (greyscale) or 3 (RGB); ``None`` picks 1 only if every image is greyscale.

    Returns:
        ``ImageDataset`` named ``"imagefolder"``, images ``(N, C, H, W)`` in [0, 1].

    Raises:
        DataError: missing folder, no class folders or no images, unreadable images, mixed sizes.
        InputError: a bad ``image_size`` or ``channels`` value.
    """
    from ..errors import InputError

    if data_dir is None:
        raise DataError("imagefolder is read from a local directory: pass data_dir")
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"imagefolder: directory not found: {root}")
    if image_size is not None and image_size < 1:
        raise InputError(f"imagefolder: image_size must be >= 1, got {image_size}")
    if channels not in (None, 1, 3):
        raise InputError(f"imagefolder: channels must be 1 or 3, got {channels}")
    sub = {d.name for d in _class_dirs(root)}
    split_layout = {"train", "test"} <= sub and all(_class_dirs(root / s) for s in ("train", "test"))
    roots = [(root / "train", False), (root / "test", True)] if split_layout else [(root, False)]
    classes: list[str] | None = None
    scanned = []
    for r, is_test in roots:
        classes, items = _scan(r, classes)
        scanned.append((items, is_test))
    if not classes:
        raise DataError(f"imagefolder: no class sub-folders in {root} (expected {root}/<class>/*.png)")
    all_files = [f for items, _ in scanned for f, _ in items]
    if not all_files:
        raise DataError(f"imagefolder: no images ({', '.join(EXTENSIONS)}) in the class folders of {root}")
    if channels is None:
        channels = 1 if all(_is_grey(f) for f in all_files) else 3
    mode = "L" if channels == 1 else "RGB"
    parts = []
    shape: tuple[int, ...] | None = None
    for items, is_test in scanned:
        arrays = []
        for f, _ in items:
            a = _read(f, image_size, mode)
            if shape is None:
                shape = a.shape
            elif a.shape != shape:
                raise DataError(f"imagefolder: {f} is {a.shape[2]}x{a.shape[1]} but earlier images are "
                                f"{shape[2]}x{shape[1]}; pass image_size to resize them all")
            arrays.append(a)
        if not arrays:
            continue
        x = torch.from_numpy(np.stack(arrays).astype(np.float32) / np.float32(255.0))
        y = torch.tensor([lab for _, lab in items], dtype=torch.int64)
        parts.append((x, y, is_test))
    x, y, official = concat_splits(parts)
    train_x = x[~official] if bool((~official).any()) else x
    mean, std = channel_stats(train_x)
    return ImageDataset("imagefolder", x.contiguous(), y, list(classes), mean, std,
                        official if split_layout else None,
                        info={"source": str(root), "format": "imagefolder", "files": len(all_files)})
