"""Each on-disk loader on tiny files written here in that exact format: values, label mapping,
shapes, the official-test flag and the error messages; the CIFAR reader refuses a malicious pickle."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from bbdefense.data import DATASETS, load_dataset, make_splits
from bbdefense.errors import DataError, InputError

RNG = np.random.default_rng(0)


def u8(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


def test_every_format_is_registered() -> None:
    names = {"mnist", "cifar10", "cifar100", "svhn", "stl10", "imagefolder", "npz", "mnist5k", "digits"}
    assert names <= set(DATASETS)


# ----------------------------------------------------------------------------------------- MNIST IDX
def write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">i", d) for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def make_mnist(root: Path, gz: bool, n_train: int = 20, n_test: int = 10) -> dict[str, np.ndarray]:
    root.mkdir(parents=True, exist_ok=True)
    arrays = {"xtr": u8(n_train, 28, 28), "ytr": np.arange(n_train) % 10, "xte": u8(n_test, 28, 28),
              "yte": (np.arange(n_test) * 3) % 10}
    write_idx(root / "train-images-idx3-ubyte", arrays["xtr"], gz)
    write_idx(root / "train-labels-idx1-ubyte", arrays["ytr"], gz)
    write_idx(root / "t10k-images-idx3-ubyte", arrays["xte"], gz)
    write_idx(root / "t10k-labels-idx1-ubyte", arrays["yte"], gz)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path: Path, gz: bool) -> None:
    a = make_mnist(tmp_path, gz)
    ds = load_dataset("mnist", tmp_path)
    assert ds.x.shape == (30, 1, 28, 28) and ds.x.dtype == torch.float32
    assert torch.equal(ds.x[:20, 0], torch.from_numpy(a["xtr"]).float() / 255)
    assert torch.equal(ds.x[20:, 0], torch.from_numpy(a["xte"]).float() / 255)
    assert ds.y.tolist() == a["ytr"].tolist() + a["yte"].tolist()
    assert ds.official_test is not None and ds.official_test.tolist() == [False] * 20 + [True] * 10
    assert ds.mean == (0.1307,) and ds.std == (0.3081,) and ds.classes == [str(i) for i in range(10)]


def test_mnist_torchvision_layout_and_missing_file(tmp_path: Path) -> None:
    make_mnist(tmp_path / "MNIST" / "raw", gz=True)
    assert len(load_dataset("mnist", tmp_path)) == 30
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte not found"):
        load_dataset("mnist", tmp_path)


def test_mnist_corrupt_files(tmp_path: Path) -> None:
    make_mnist(tmp_path, gz=False)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-100])  # truncated
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset("mnist", tmp_path)
    p.write_bytes(b"\x12\x34\x08\x03" + b"\x00" * 12)
    with pytest.raises(DataError, match="not an IDX file"):
        load_dataset("mnist", tmp_path)
    p.unlink()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read"):
        load_dataset("mnist", tmp_path)


def test_missing_data_dir_and_unknown_option(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data directory not found: .*nowhere"):
        load_dataset("cifar10", tmp_path / "nowhere")
    with pytest.raises(DataError, match="pass --data-dir"):
        load_dataset("svhn")
    with pytest.raises(InputError, match="takes no option 'image_size'"):
        load_dataset("mnist", tmp_path, image_size=32)


# ------------------------------------------------------------------------------------------- CIFAR
def cifar_rows(n: int) -> np.ndarray:
    return u8(n, 3 * 32 * 32)


def write_pickle(path: Path, obj: object, protocol: int) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def make_cifar10_python(root: Path, per_batch: int = 4, bytes_keys: bool = True) -> tuple[np.ndarray, np.ndarray]:
    root.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    key = (lambda s: s.encode()) if bytes_keys else (lambda s: s)
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        x, y = cifar_rows(per_batch), [(i * per_batch + k) % 10 for k in range(per_batch)]
        write_pickle(root / name, {key("batch_label"): key(name), key("data"): x, key("labels"): y,
                                   key("filenames"): [key(f"f{k}.png") for k in range(per_batch)]}, protocol=2)
        xs.append(x)
        ys.extend(y)
    names = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    write_pickle(root / "batches.meta", {key("label_names"): [key(n) for n in names]}, protocol=2)
    return np.concatenate(xs), np.array(ys)


@pytest.mark.parametrize("bytes_keys", [True, False])
def test_cifar10_python(tmp_path: Path, bytes_keys: bool) -> None:
    x, y = make_cifar10_python(tmp_path / "cifar-10-batches-py", bytes_keys=bytes_keys)
    ds = load_dataset("cifar10", tmp_path)
    assert ds.x.shape == (24, 3, 32, 32)
    # a row is the R plane, then G, then B, each 32x32 row-major
    assert float(ds.x[5, 1, 2, 7]) == pytest.approx(x[5, 1024 + 2 * 32 + 7] / 255)
    assert torch.equal(ds.x, torch.from_numpy(x.reshape(-1, 3, 32, 32)).float() / 255)
    assert ds.y.tolist() == y.tolist()
    assert ds.official_test is not None and ds.official_test.tolist() == [False] * 20 + [True] * 4
    assert ds.classes[0] == "plane" and ds.mean == (0.4914, 0.4822, 0.4465) and ds.info["format"] == "python"
    splits = make_splits(ds, seed=0, sizes={"owner_train": 10, "defender": 10, "test": 4})
    assert len(splits.test) == 4 and bool(splits.test.official_test.all())  # type: ignore[union-attr]
    assert not bool(splits.owner_train.official_test.any())  # type: ignore[union-attr]


def test_cifar10_missing_batch_is_named(tmp_path: Path) -> None:
    make_cifar10_python(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3 not found"):
        load_dataset("cifar10", tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"no CIFAR-10 files.*data_batch_1"):
        load_dataset("cifar10", empty)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, (f"touch {self.marker}",))


def test_cifar_refuses_a_malicious_pickle(tmp_path: Path) -> None:
    make_cifar10_python(tmp_path)
    marker = tmp_path / "pwned"
    write_pickle(tmp_path / "data_batch_2", {"data": cifar_rows(2), "labels": [0, 1], "x": _Evil(marker)}, 2)
    with pytest.raises(DataError, match=r"refusing to load global (posix|os)\.system"):
        load_dataset("cifar10", tmp_path)
    assert not marker.exists()
    # a pickled class instance (copyreg/__main__ globals) is refused as well
    write_pickle(tmp_path / "data_batch_2", {"data": cifar_rows(2), "labels": [0, 1], "x": Path("/etc")}, 4)
    with pytest.raises(DataError, match="refusing to load global pathlib"):
        load_dataset("cifar10", tmp_path)


def test_cifar_numpy_pickle_protocols_are_accepted(tmp_path: Path) -> None:
    from bbdefense.data._safe_pickle import safe_load

    arr = u8(3, 3072)
    for proto in (2, 4, 5):
        p = tmp_path / f"p{proto}"
        write_pickle(p, {"data": arr, "labels": np.array([1, 2, 3]), "n": np.int64(3)}, proto)
        d = safe_load(p)
        assert np.array_equal(d["data"], arr) and d["labels"].tolist() == [1, 2, 3] and d["n"] == 3


def test_cifar_corrupt_and_wrong_shape(tmp_path: Path) -> None:
    make_cifar10_python(tmp_path)
    (tmp_path / "data_batch_4").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match="data_batch_4 is not a valid CIFAR python batch"):
        load_dataset("cifar10", tmp_path)
    write_pickle(tmp_path / "data_batch_4", {"data": u8(2, 100), "labels": [0, 1]}, 2)
    with pytest.raises(DataError, match=r"'data' must be uint8 of shape \(N, 3072\)"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_binary(tmp_path: Path) -> None:
    root = tmp_path / "cifar-10-batches-bin"
    root.mkdir()
    xs, ys = [], []
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        x, y = cifar_rows(3), np.array([(i * 3 + k) % 10 for k in range(3)], dtype=np.uint8)
        (root / f"{name}.bin").write_bytes(np.concatenate([y[:, None], x], axis=1).tobytes())
        xs.append(x)
        ys.extend(y.tolist())
    ds = load_dataset("cifar10", tmp_path)
    assert ds.info["format"] == "binary" and ds.x.shape == (18, 3, 32, 32)
    assert torch.equal(ds.x, torch.from_numpy(np.concatenate(xs).reshape(-1, 3, 32, 32)).float() / 255)
    assert ds.y.tolist() == ys and int(ds.official_test.sum()) == 3  # type: ignore[union-attr]
    (root / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="not a multiple of the 3073-byte CIFAR record"):
        load_dataset("cifar10", tmp_path)


def test_cifar100_python_and_binary(tmp_path: Path) -> None:
    py = tmp_path / "py" / "cifar-100-python"
    py.mkdir(parents=True)
    xtr, xte = cifar_rows(5), cifar_rows(3)
    fine_tr, fine_te = [99, 0, 42, 7, 99], [1, 2, 3]
    write_pickle(py / "train", {b"data": xtr, b"fine_labels": fine_tr, b"coarse_labels": [19, 0, 1, 2, 19]}, 2)
    write_pickle(py / "test", {b"data": xte, b"fine_labels": fine_te, b"coarse_labels": [0, 0, 0]}, 2)
    write_pickle(py / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, 2)
    ds = load_dataset("cifar100", tmp_path / "py")
    assert ds.num_classes == 100 and ds.classes[42] == "c42" and ds.y.tolist() == fine_tr + fine_te
    assert ds.official_test.tolist() == [False] * 5 + [True] * 3  # type: ignore[union-attr]
    assert torch.equal(ds.x[:5], torch.from_numpy(xtr.reshape(-1, 3, 32, 32)).float() / 255)
    assert ds.mean == (0.5071, 0.4865, 0.4409)
    b = tmp_path / "bin" / "cifar-100-binary"
    b.mkdir(parents=True)
    for split, x, fine in (("train", xtr, fine_tr), ("test", xte, fine_te)):
        coarse = np.zeros(len(fine), dtype=np.uint8)
        rec = np.concatenate([coarse[:, None], np.array(fine, dtype=np.uint8)[:, None], x], axis=1)
        (b / f"{split}.bin").write_bytes(rec.tobytes())
    dsb = load_dataset("cifar100", tmp_path / "bin")
    assert torch.equal(dsb.x, ds.x) and dsb.y.tolist() == ds.y.tolist() and dsb.classes[42] == "42"


# -------------------------------------------------------------------------------------------- SVHN
def test_svhn_mat(tmp_path: Path) -> None:
    from scipy.io import savemat

    xtr, xte = u8(32, 32, 3, 6), u8(32, 32, 3, 4)
    ytr = np.array([[10], [1], [2], [10], [9], [5]], dtype=np.uint8)
    yte = np.array([[3], [10], [4], [1]], dtype=np.uint8)
    savemat(tmp_path / "train_32x32.mat", {"X": xtr, "y": ytr})
    savemat(tmp_path / "test_32x32.mat", {"X": xte, "y": yte})
    ds = load_dataset("svhn", tmp_path)
    assert ds.x.shape == (10, 3, 32, 32)
    assert ds.y.tolist() == [0, 1, 2, 0, 9, 5, 3, 0, 4, 1]  # 10 means the digit 0
    assert float(ds.x[2, 1, 5, 9]) == pytest.approx(xtr[5, 9, 1, 2] / 255)  # X is (H, W, C, N)
    assert torch.equal(ds.x[6:], torch.from_numpy(xte.transpose(3, 2, 0, 1).copy()).float() / 255)
    assert ds.official_test.tolist() == [False] * 6 + [True] * 4  # type: ignore[union-attr]
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB 5.0 garbage" * 10)
    with pytest.raises(DataError, match=r"cannot read SVHN file .*test_32x32\.mat"):
        load_dataset("svhn", tmp_path)
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(DataError, match=r"test_32x32\.mat not found"):
        load_dataset("svhn", tmp_path)


# ------------------------------------------------------------------------------------------ STL-10
def test_stl10_binary_is_column_major(tmp_path: Path) -> None:
    root = tmp_path / "stl10_binary"
    root.mkdir()
    imgs = {"train": u8(3, 3, 96, 96), "test": u8(2, 3, 96, 96)}  # (N, C, H, W) as they should load
    labels = {"train": np.array([1, 10, 5], np.uint8), "test": np.array([2, 10], np.uint8)}
    for split in ("train", "test"):
        # the file stores each channel column-major, i.e. the (C, W, H) array in C order
        (root / f"{split}_X.bin").write_bytes(np.ascontiguousarray(imgs[split].transpose(0, 1, 3, 2)).tobytes())
        (root / f"{split}_y.bin").write_bytes(labels[split].tobytes())
    ds = load_dataset("stl10", tmp_path)
    assert ds.x.shape == (5, 3, 96, 96)
    assert torch.equal(ds.x, torch.from_numpy(np.concatenate([imgs["train"], imgs["test"]])).float() / 255)
    assert ds.y.tolist() == [0, 9, 4, 1, 9] and ds.classes[0] == "airplane"
    assert ds.official_test.tolist() == [False] * 3 + [True] * 2  # type: ignore[union-attr]
    (root / "test_y.bin").write_bytes(np.array([2, 11], np.uint8).tobytes())
    with pytest.raises(DataError, match=r"labels must be in 1\.\.10, got 2\.\.11"):
        load_dataset("stl10", tmp_path)
    (root / "test_y.bin").write_bytes(np.array([2], np.uint8).tobytes())
    with pytest.raises(DataError, match="1 labels for 2 images"):
        load_dataset("stl10", tmp_path)
    (root / "train_X.bin").unlink()
    with pytest.raises(DataError, match=r"train_X\.bin not found"):
        load_dataset("stl10", tmp_path)


# ------------------------------------------------------------------------------------- imagefolder
def write_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_imagefolder_rgb_with_train_test(tmp_path: Path) -> None:
    want = {}
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("zebra", "ant"):
            for i in range(n):
                arr = u8(8, 10, 3)
                write_png(tmp_path / split / cls / f"{i}.png", arr)
                want[(split, cls, i)] = arr
    (tmp_path / "train" / "ant" / "notes.txt").write_text("ignored")
    ds = load_dataset("imagefolder", tmp_path)
    assert ds.classes == ["ant", "zebra"]  # sorted
    assert ds.x.shape == (10, 3, 8, 10)
    assert ds.y.tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 1, 1]
    assert ds.official_test.tolist() == [False] * 6 + [True] * 4  # type: ignore[union-attr]
    zebra0 = torch.from_numpy(want[("train", "zebra", 0)].transpose(2, 0, 1).copy()).float() / 255
    assert torch.equal(ds.x[3], zebra0)
    assert len(ds.mean) == 3


def test_imagefolder_grey_resize_and_errors(tmp_path: Path) -> None:
    write_png(tmp_path / "b" / "0.png", np.full((6, 6), 200, np.uint8))
    write_png(tmp_path / "a" / "0.png", np.full((4, 4), 100, np.uint8))
    with pytest.raises(DataError, match="pass image_size"):
        load_dataset("imagefolder", tmp_path)
    ds = load_dataset("imagefolder", tmp_path, image_size=5)
    assert ds.x.shape == (2, 1, 5, 5) and ds.official_test is None and ds.y.tolist() == [0, 1]
    assert torch.allclose(ds.x[0], torch.full((1, 5, 5), 100 / 255))
    assert torch.allclose(ds.x[1], torch.full((1, 5, 5), 200 / 255))
    assert load_dataset("imagefolder", tmp_path, image_size=5, channels=3).x.shape == (2, 3, 5, 5)
    (tmp_path / "a" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot read image .*bad\.png"):
        load_dataset("imagefolder", tmp_path, image_size=5)
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset("imagefolder", tmp_path / "a")
    with pytest.raises(InputError, match="channels must be 1 or 3, got 2"):
        load_dataset("imagefolder", tmp_path, channels=2)


# --------------------------------------------------------------------------------------------- npz
def test_npz_layouts_and_test_split(tmp_path: Path) -> None:
    x_nhwc = u8(6, 5, 7, 3)
    np.savez(tmp_path / "data.npz", x=x_nhwc, y=np.array([0, 1, 2, 0, 1, 2]),
             x_test=u8(2, 5, 7, 3), y_test=np.array([2, 1]), classes=np.array(["a", "b", "c"]))
    ds = load_dataset("npz", tmp_path)
    assert ds.x.shape == (8, 3, 5, 7) and ds.classes == ["a", "b", "c"]
    assert torch.equal(ds.x[:6], torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).copy()).float() / 255)
    assert ds.official_test.tolist() == [False] * 6 + [True] * 2  # type: ignore[union-attr]
    x_nchw = RNG.random((4, 1, 6, 6)).astype(np.float32)
    f = tmp_path / "other.npz"
    np.savez(f, x=x_nchw, y=np.array([1, 0, 1, 3]))
    ds2 = load_dataset("npz", f)
    assert torch.equal(ds2.x, torch.from_numpy(x_nchw)) and ds2.classes == ["0", "1", "2", "3"]
    assert ds2.official_test is None
    g = tmp_path / "hw.npz"
    np.savez(g, x=u8(3, 9, 9), y=np.array([0, 0, 1]))
    assert load_dataset("npz", g).x.shape == (3, 1, 9, 9)


def test_npz_errors(tmp_path: Path) -> None:
    bad = tmp_path / "range.npz"
    np.savez(bad, x=np.full((2, 4, 4), 1.5, np.float32), y=np.array([0, 1]))
    with pytest.raises(DataError, match=r"float pixels must be in \[0, 1\], got 1.5"):
        load_dataset("npz", bad)
    obj = tmp_path / "obj.npz"
    np.savez(obj, x=np.array([object(), object()], dtype=object), y=np.array([0, 1]))
    with pytest.raises(DataError, match="cannot read"):
        load_dataset("npz", obj)
    nolabel = tmp_path / "nolabel.npz"
    np.savez(nolabel, x=u8(2, 4, 4))
    with pytest.raises(DataError, match="lacks the array 'y'"):
        load_dataset("npz", nolabel)
    amb = tmp_path / "amb.npz"
    np.savez(amb, x=u8(2, 3, 4, 3), y=np.array([0, 1]))
    with pytest.raises(DataError, match="cannot tell channels-first"):
        load_dataset("npz", amb)
    assert load_dataset("npz", amb, layout="nhwc").x.shape == (2, 3, 3, 4)
    with pytest.raises(DataError, match=r"4 \.npz files"):
        load_dataset("npz", tmp_path)
    (tmp_path / "trunc.npz").write_bytes(b"PK\x03\x04broken")
    with pytest.raises(DataError, match=r"not a valid \.npz"):
        load_dataset("npz", tmp_path / "trunc.npz")
