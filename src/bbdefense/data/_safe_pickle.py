"""A restricted unpickler for the CIFAR python batches (registers no dataset).

The CIFAR "python version" files are pickles of dicts holding numpy arrays, lists of ints and
strings. Plain :func:`pickle.load` would run whatever a crafted file names (``os.system``...);
:class:`SafeUnpickler` resolves only the handful of globals numpy needs to rebuild arrays, dtypes and
scalars (under their numpy 1 and numpy 2 module names) plus ``_codecs.encode`` (how Python 3 pickles
bytes at protocol 2). Everything else (containers, numbers, strings) is built by pickle opcodes
without any global. Any other global is refused with a :class:`DataError`.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError


def _numpy_globals() -> dict[tuple[str, str], Any]:
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    frombuffer = np.ndarray.__reduce_ex__(np.zeros(1), 5)[0]
    scalar = np.float64(0).__reduce__()[0]
    out: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                       ("_codecs", "encode"): codecs.encode}
    for mod in ("numpy.core", "numpy._core"):
        out[(f"{mod}.multiarray", "_reconstruct")] = reconstruct
        out[(f"{mod}.multiarray", "scalar")] = scalar
        out[(f"{mod}.numeric", "_frombuffer")] = frombuffer
    return out


ALLOWED_GLOBALS = _numpy_globals()


class ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle names a global outside :data:`ALLOWED_GLOBALS`."""


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise ForbiddenGlobal(f"refusing to load global {module}.{name}") from None


def _str_keys(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    return obj


def safe_load(path: Path) -> dict[str, Any]:
    """Load a CIFAR-style pickled dict from ``path`` with :class:`SafeUnpickler`.

    Python 2 strings are decoded as latin-1 (numpy's advice for Python 2 array pickles); bytes keys are
    turned into str, so ``d["data"]`` works whichever Python wrote the file.

    Raises:
        DataError: the file is unreadable, not a pickle, names a forbidden global, or is not a dict.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    try:
        obj = SafeUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except ForbiddenGlobal as exc:
        raise DataError(f"{path} is not a safe CIFAR batch: {exc} (only numpy arrays, lists, dicts, strings "
                        f"and numbers are allowed)") from exc
    except Exception as exc:  # truncated / garbage files raise many different errors
        raise DataError(f"{path} is not a valid CIFAR python batch ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path} does not hold a dict (got {type(obj).__name__}): not a CIFAR python batch")
    return _str_keys(obj)
