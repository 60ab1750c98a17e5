"""Deterministic, stratified, seeded splits as the papers use them.

* ``owner_train``: the data the model owner trained the target on (the members, for privacy).
* ``defender``: a **disjoint** set from the same distribution (DUCD's CIFAR-S role).
* ``defender_shifted``: a **shifted** set (DUCD's CIFAR-10.1 role). For ``mnist5k`` it is another
  dataset of the same classes (scikit-learn digits rendered at 28x28, see
  :func:`~bbdefense.data.embedded.digits_as_mnist`); otherwise it is a disjoint part of the pool
  passed through :func:`corrupt` (a documented shift).
* ``test``: held out; the whole official test split when the dataset has one (unless ``sizes`` sets
  ``test``).

**Order.** Every split is returned in a seeded, class-interleaved order (:func:`stratified_order`), so
any prefix ``split.x[:N]`` holds every class in proportion (each class within one image of
``N * p_class``). Evaluations that take "the first N test images" therefore describe the whole
model, not the first class of a sorted file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor

from ..errors import DataError, InputError
from .base import ImageDataset

# Split sizes per dataset. Integers are counts; floats are fractions of the pool.
DEFAULT_SIZES: dict[str, dict[str, float]] = {
    "mnist5k": {"owner_train": 3000, "defender": 1000, "test": 1000},
    "_default": {"owner_train": 0.5, "defender": 0.25, "shifted": 0.25, "test": 0.2},
}


@dataclass
class Splits:
    owner_train: ImageDataset
    defender: ImageDataset
    defender_shifted: ImageDataset
    test: ImageDataset

    def sizes(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in ("owner_train", "defender", "defender_shifted", "test")}

    def __getitem__(self, name: str) -> ImageDataset:
        if name not in ("owner_train", "defender", "defender_shifted", "test"):
            raise InputError(f"unknown split {name!r}; choose owner_train, defender, defender_shifted or test")
        return getattr(self, name)


def corrupt(x: Tensor, *, seed: int = 0) -> Tensor:
    """The documented distribution shift used when a dataset has no natural shifted set.

    Contrast reduced to 0.7 around each image's mean, a 3x3 Gaussian blur (sigma 0.8), then
    additive Gaussian noise of std 0.03 drawn from a generator seeded with ``seed``; clipped to
    [0, 1]. Shape preserved.
    """
    g = torch.Generator().manual_seed(seed)
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    y = m + 0.7 * (x - m)
    k1 = torch.exp(-torch.tensor([-1.0, 0.0, 1.0]) ** 2 / (2 * 0.8**2))
    k = (k1[:, None] * k1[None, :]) / (k1.sum() ** 2)
    c = x.shape[1]
    y = torch.nn.functional.conv2d(torch.nn.functional.pad(y, (1, 1, 1, 1), mode="replicate"),
                                   k.expand(c, 1, 3, 3).contiguous(), groups=c)
    y = y + 0.03 * torch.randn(y.shape, generator=g)
    return y.clamp(0, 1).contiguous()


def _count(spec: float, n: int) -> int:
    """An int (or a float > 1) is a count; a float in [0, 1] is a fraction of ``n`` (so 1.0 is all)."""
    return int(spec) if isinstance(spec, int) or spec > 1 else round(spec * n)


#: names the order :func:`make_splits` returns each split in; recorded in training recipes so that a model
#: cached under another order (the class-sorted one before 2026-12-03) is retrained, not silently reused
SPLIT_ORDER = "class-interleaved-v1"


def stratified_order(y: np.ndarray, seed: int) -> np.ndarray:
    """A seeded permutation of ``range(len(y))`` whose every prefix is class-proportional.

    Images are shuffled within each class (seeded) and the classes are dealt greedily: position
    ``N`` goes to the class whose count lags its quota ``(N + 1) * p_c`` the most (ties broken at
    random, seeded). Every prefix of ``N`` images then holds ``N * p_c`` images of class ``c`` up to
    less than 2 images (at most 1 for balanced classes; asserted for every dataset by
    ``tests/data/test_split_order.py``), so "the first N test images" samples every class.
    """
    y = np.asarray(y)
    n = len(y)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes, inv, sizes = np.unique(y, return_inverse=True, return_counts=True)
    members = [rng.permutation(np.flatnonzero(inv == k)) for k in range(len(classes))]
    p = sizes / n
    jitter = rng.random((len(classes), int(sizes.max()) + 1)) * 1e-9  # seeded tie-breaker per (class, count)
    count = np.zeros(len(classes), dtype=np.int64)
    out = np.empty(n, dtype=np.int64)
    rows = np.arange(len(classes))
    for i in range(n):
        score = (i + 1) * p - count + jitter[rows, count]
        score[count >= sizes] = -np.inf
        k = int(np.argmax(score))
        out[i] = members[k][count[k]]
        count[k] += 1
    return out


def _ordered(idx: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """``idx`` reordered by :func:`stratified_order` of its labels."""
    return idx[stratified_order(y[idx], seed)]


def _stratified_take(idx: np.ndarray, y: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into (k stratified items, rest)."""
    if k >= len(idx):
        return idx, idx[:0]
    if k <= 0:
        return idx[:0], idx
    try:
        take, rest = train_test_split(idx, train_size=k, stratify=y[idx], random_state=seed)
    except ValueError as exc:  # too few images of a class, or k smaller than the number of classes
        counts = np.bincount(y[idx])
        raise DataError(f"cannot take a stratified split of {k} from {len(idx)} images "
                        f"(smallest class has {int(counts[counts > 0].min())}): {exc}; pass other split sizes") from exc
    return np.sort(take), np.sort(rest)


def make_splits(ds: ImageDataset, *, seed: int = 0, sizes: dict[str, float] | None = None) -> Splits:
    """Split ``ds`` into owner-train / defender / defender-shifted / test, stratified by class.

    The same ``(ds, seed, sizes)`` always gives the same splits; owner-train, defender and test
    never share an image.
    """
    spec = dict(sizes or DEFAULT_SIZES.get(ds.name, DEFAULT_SIZES["_default"]))
    y = ds.y.numpy()
    all_idx = np.arange(len(ds))
    if ds.official_test is not None and bool(ds.official_test.any()):
        test_pool = all_idx[ds.official_test.numpy()]
        pool = all_idx[~ds.official_test.numpy()]
        # the whole official test split unless the caller asked for a size
        n_test = _count(sizes["test"], len(test_pool)) if sizes and "test" in sizes else len(test_pool)
        test_idx, _ = _stratified_take(test_pool, y, min(n_test, len(test_pool)), seed)
    else:
        pool = all_idx
        test_idx, pool = _stratified_take(pool, y, _count(spec["test"], len(ds)), seed)
    n = len(pool)
    owner_idx, pool = _stratified_take(pool, y, _count(spec["owner_train"], n), seed + 1)
    def_idx, pool = _stratified_take(pool, y, _count(spec["defender"], n), seed + 2)
    if ds.name == "mnist5k":
        from .embedded import digits_as_mnist

        digits = digits_as_mnist()
        shifted = digits.subset(torch.from_numpy(stratified_order(digits.y.numpy(), seed + 13)))
    else:
        k = _count(spec.get("shifted", 0.25), n)
        sh_idx, _ = _stratified_take(pool, y, min(k, len(pool)), seed + 3)
        if len(sh_idx) == 0:  # no pool left: shift a copy of the defender set instead
            sh_idx = def_idx
        base = ds.subset(torch.from_numpy(_ordered(sh_idx, y, seed + 13)))
        shifted = ImageDataset(f"{ds.name}-shifted", corrupt(base.x, seed=seed), base.y, base.classes, ds.mean,
                               ds.std, info={"shift": "corrupt(contrast 0.7, blur 0.8, noise 0.03)"})
    # membership is decided above; the order of each split is a class-interleaved seeded shuffle
    return Splits(
        owner_train=ds.subset(torch.from_numpy(_ordered(owner_idx, y, seed + 11)), f"{ds.name}:owner_train"),
        defender=ds.subset(torch.from_numpy(_ordered(def_idx, y, seed + 12)), f"{ds.name}:defender"),
        defender_shifted=shifted,
        test=ds.subset(torch.from_numpy(_ordered(test_idx, y, seed + 14)), f"{ds.name}:test"),
    )
