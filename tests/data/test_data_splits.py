"""The foundation's splits: deterministic for a seed, stratified, owner/defender/test disjoint,
mnist5k sizes 3000/1000/1000 and its shifted set = scikit-learn digits rendered at 28x28."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bbdefense.data import ImageDataset, corrupt, load_dataset, make_splits
from bbdefense.data.embedded import digits_as_mnist
from bbdefense.data.splits import stratified_order
from bbdefense.errors import InputError


def row_ids(ds: ImageDataset) -> list[str]:
    return [hashlib.sha1(r.numpy().tobytes()).hexdigest() for r in ds.x]


def indexed_dataset(n: int = 400, k: int = 4, official_test: int = 0) -> ImageDataset:
    """Image i is constant i / n (a unique id readable from any pixel); label i % k."""
    x = (torch.arange(n, dtype=torch.float32) / n).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    off = None
    if official_test:
        off = torch.zeros(n, dtype=torch.bool)
        off[-official_test:] = True
    return ImageDataset("toy", x, torch.arange(n) % k, [str(i) for i in range(k)], (0.5,), (0.5,), off)


def ids(ds: ImageDataset, n: int = 400) -> set[int]:
    return {round(float(v) * n) for v in ds.x[:, 0, 0, 0]}


def test_mnist5k_split_sizes_and_stratification(mnist_splits) -> None:
    assert mnist_splits.sizes() == {"owner_train": 3000, "defender": 1000, "defender_shifted": 1797, "test": 1000}
    for name, per_class in (("owner_train", 300), ("defender", 100), ("test", 100)):
        assert Counter(mnist_splits[name].y.tolist()) == dict.fromkeys(range(10), per_class), name


def test_mnist5k_owner_defender_test_are_disjoint(mnist_splits, mnist5k) -> None:
    sets = {k: set(row_ids(mnist_splits[k])) for k in ("owner_train", "defender", "test")}
    assert sum(len(s) for s in sets.values()) == 5000 == len(set.union(*sets.values()))
    assert set.union(*sets.values()) == set(row_ids(mnist5k))  # nothing invented, nothing lost


def test_mnist5k_shifted_set_is_digits_rendered_at_28(mnist_splits) -> None:
    sh = mnist_splits.defender_shifted
    digits = load_dataset("digits")
    digits = digits.subset(torch.from_numpy(stratified_order(digits.y.numpy(), 13)))  # the split's order (seed 0)
    assert sh.x.shape == (1797, 1, 28, 28) and torch.equal(sh.y, digits.y)
    assert sh.mean == mnist_splits.owner_train.mean  # normalised like MNIST
    border = torch.ones(28, 28, dtype=torch.bool)
    border[4:24, 4:24] = False
    assert float(sh.x[:, 0][:, border].abs().max()) == 0.0  # centred in a 20x20 box, MNIST-style
    back = F.adaptive_avg_pool2d(sh.x[:, :, 4:24, 4:24], 8).flatten(1)  # undo the 8 -> 20 upsampling
    orig = digits.x.flatten(1)
    a, b = back - back.mean(1, keepdim=True), orig - orig.mean(1, keepdim=True)
    corr = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    assert float(corr.min()) > 0.8 and float(corr.mean()) > 0.9  # image k of the set is digit k, same drawing
    assert torch.equal(sh.x, digits_as_mnist().x[stratified_order(digits_as_mnist().y.numpy(), 13)])


def test_splits_are_deterministic_for_a_seed_and_change_with_it() -> None:
    ds = indexed_dataset()
    a, b, c = make_splits(ds, seed=3), make_splits(ds, seed=3), make_splits(ds, seed=4)
    for k in ("owner_train", "defender", "defender_shifted", "test"):
        assert torch.equal(a[k].x, b[k].x) and torch.equal(a[k].y, b[k].y)
    assert ids(a.owner_train) != ids(c.owner_train)


def test_default_fractions_disjoint_stratified_and_shifted_by_corrupt() -> None:
    ds = indexed_dataset(400, 4)
    s = make_splits(ds, seed=0)
    # test 20% of all; then owner 50%, defender 25%, shifted 25% of the remaining 320
    assert s.sizes() == {"owner_train": 160, "defender": 80, "defender_shifted": 80, "test": 80}
    o, d, t = ids(s.owner_train), ids(s.defender), ids(s.test)
    assert not (o & d) and not (o & t) and not (d & t)
    for name in ("owner_train", "defender", "test"):
        counts = Counter(s[name].y.tolist())
        assert max(counts.values()) - min(counts.values()) <= 1, name
    # the shifted set is corrupt() of a disjoint part of the pool
    rest = sorted(set(range(400)) - o - d - t)
    base = ds.subset(torch.tensor(rest))
    base = base.subset(torch.from_numpy(stratified_order(base.y.numpy(), 13)))  # the split's order (seed 0)
    assert torch.equal(s.defender_shifted.x, corrupt(base.x, seed=0))
    assert not torch.equal(s.defender_shifted.x, base.x)


def test_official_test_rows_form_the_test_split() -> None:
    ds = indexed_dataset(400, 4, official_test=100)
    s = make_splits(ds, seed=0, sizes={"owner_train": 0.5, "defender": 0.25, "shifted": 0.25, "test": 1.0})
    assert ids(s.test) == set(range(300, 400))
    assert not (ids(s.owner_train) | ids(s.defender)) & set(range(300, 400))


def test_corrupt_is_seeded_and_keeps_range() -> None:
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y1, y2, y3 = corrupt(x, seed=1), corrupt(x, seed=1), corrupt(x, seed=2)
    assert torch.equal(y1, y2) and not torch.equal(y1, y3)
    assert y1.shape == x.shape and float(y1.min()) >= 0 and float(y1.max()) <= 1
    # contrast 0.7 shrinks the spread around the mean (noise std 0.03 is much smaller)
    assert float(y1.std()) < float(x.std())


def test_unknown_split_name(mnist_splits) -> None:
    with pytest.raises(InputError, match="unknown split 'train'"):
        mnist_splits["train"]


def test_loaded_arrays_are_uint8_exact(mnist5k) -> None:
    # MNIST-5k pixels are k/255 exactly: the loader neither rescales nor smooths
    v = (mnist5k.x * 255).numpy()
    assert np.allclose(v, np.round(v), atol=1e-4) and mnist5k.x.shape == (5000, 1, 28, 28)


def test_splits_keep_whole_official_test_split_and_name_stratification_failures():
    import pytest
    import torch

    from bbdefense import DataError
    from bbdefense.data import ImageDataset, make_splits

    g = torch.Generator().manual_seed(0)
    x = torch.rand(120, 1, 4, 4, generator=g)
    y = torch.arange(120) % 4
    official = torch.zeros(120, dtype=torch.bool)
    official[100:] = True
    ds = ImageDataset("toy", x, y, ["a", "b", "c", "d"], (0.5,), (0.25,), official_test=official)
    sp = make_splits(ds, seed=0)
    assert len(sp.test) == 20  # all of the official test split, not a fraction of it
    tiny = ImageDataset("tiny", x[:5], torch.tensor([0, 0, 1, 2, 3]), ["a", "b", "c", "d"], (0.5,), (0.25,))
    with pytest.raises(DataError, match="cannot take a stratified split"):
        make_splits(tiny, seed=0)
