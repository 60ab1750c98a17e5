"""The tensor encoding on the wire, shared by the server (:mod:`.app`) and the clients (:mod:`.client`).

A tensor travels as a JSON object::

    {"dtype": "float32", "shape": [N, C, H, W], "data": "<base64 of the raw little-endian C-order bytes>"}

* ``float32``: the exact IEEE-754 bits, so a round trip is bit-exact (HTTP and local black boxes agree
  to the last bit on deterministic models).
* ``uint8``: 8-bit pixels, read as ``value / 255`` (4x smaller requests for images already on the
  8-bit grid; :func:`encode_tensor` refuses images that are not, rather than silently rounding).
* ``int64``: labels (responses in ``output="label"`` mode).

Small batches may instead be sent as nested JSON lists (``[[[[0.0, ...]]]]``); floats round-trip
exactly too (float32 -> float64 -> shortest repr -> float32).

Decoding never trusts the client: the dtype must be known, the shape must be a short list of
non-negative ints, the byte count must match the shape exactly, and the element count is bounded.
Every failure raises :class:`~bbdefense.errors.InputError` naming the problem and the value (the
server turns it into a 422).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError

#: dtype name on the wire -> little-endian numpy dtype
WIRE_DTYPES: dict[str, np.dtype[Any]] = {
    "float32": np.dtype("<f4"),
    "uint8": np.dtype("u1"),
    "int64": np.dtype("<i8"),
}
MAX_DIMS = 8


def encode_tensor(x: Tensor, dtype: str = "float32") -> dict[str, Any]:
    """Encode ``x`` as ``{"dtype", "shape", "data"}`` (base64).

    Args:
        x: any tensor; for ``dtype="uint8"`` it must hold images in [0, 1] on the 8-bit grid
            (``x * 255`` integral), for ``"int64"`` integer values.
        dtype: ``"float32"`` (default, exact), ``"uint8"`` or ``"int64"``.

    Raises:
        InputError: unknown dtype, or values that ``uint8`` cannot represent exactly.
    """
    if dtype not in WIRE_DTYPES:
        raise InputError(f"unknown wire dtype {dtype!r}; choose one of: {', '.join(WIRE_DTYPES)}")
    t = x.detach().cpu()
    if dtype == "uint8":
        scaled = t.double() * 255.0
        q = scaled.round()
        if t.numel() and (bool((q < 0).any()) or bool((q > 255).any()) or float((scaled - q).abs().max()) > 1e-3):
            raise InputError("uint8 encoding needs images in [0, 1] on the 8-bit grid (x * 255 integral); "
                             "use dtype='float32' for other values")
        arr = q.numpy().astype(np.uint8)
    else:
        arr = t.numpy().astype(WIRE_DTYPES[dtype], copy=False)
    arr = np.ascontiguousarray(arr)
    return {"dtype": dtype, "shape": list(arr.shape), "data": base64.b64encode(arr.tobytes()).decode("ascii")}


def _check_shape(shape: object, max_elements: int | None) -> tuple[int, ...]:
    if not isinstance(shape, (list, tuple)) or not 1 <= len(shape) <= MAX_DIMS:
        raise InputError(f"'shape' must be a list of 1 to {MAX_DIMS} non-negative integers, got {shape!r}")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InputError(f"'shape' must hold non-negative integers, got {shape!r}")
    n = math.prod(shape)
    if max_elements is not None and n > max_elements:
        raise InputError(f"tensor of shape {list(shape)} has {n} elements, more than the limit {max_elements}")
    return tuple(shape)


def decode_tensor(obj: object, *, max_elements: int | None = None) -> Tensor:
    """Decode a wire tensor (``{"dtype", "shape", "data"}``) to a torch tensor.

    ``uint8`` data become float32 ``value / 255``; ``float32`` and ``int64`` keep their dtype.

    Raises:
        InputError: a missing field, unknown dtype, bad shape, invalid base64, a byte count that does
            not match the shape, or more than ``max_elements`` elements.
    """
    if not isinstance(obj, dict):
        raise InputError(f"a wire tensor must be an object with dtype, shape and data, got {type(obj).__name__}")
    missing = [k for k in ("dtype", "shape", "data") if k not in obj]
    if missing:
        raise InputError(f"wire tensor lacks field(s) {', '.join(missing)}")
    dtype = obj["dtype"]
    if not isinstance(dtype, str) or dtype not in WIRE_DTYPES:
        raise InputError(f"unknown wire dtype {dtype!r}; choose one of: {', '.join(WIRE_DTYPES)}")
    shape = _check_shape(obj["shape"], max_elements)
    data = obj["data"]
    if not isinstance(data, str):
        raise InputError(f"'data' must be a base64 string, got {type(data).__name__}")
    try:
        raw = base64.b64decode(data.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise InputError(f"'data' is not valid base64: {exc}") from None
    npd = WIRE_DTYPES[dtype]
    expected = math.prod(shape) * npd.itemsize
    if len(raw) != expected:
        raise InputError(f"'data' holds {len(raw)} bytes but shape {list(shape)} of {dtype} needs {expected}")
    arr = np.frombuffer(raw, dtype=npd).reshape(shape)
    if dtype == "uint8":
        return torch.from_numpy(arr.astype(np.float32) / np.float32(255.0))
    return torch.from_numpy(arr.astype(npd.newbyteorder("="), copy=True))


def decode_nested(obj: object, *, max_elements: int | None = None) -> Tensor:
    """Decode nested JSON lists of numbers (a small batch) to a float32 tensor.

    Raises:
        InputError: ragged lists, non-numbers (bools and strings included), or too many elements.
    """
    shape: list[int] = []
    cur = obj
    while isinstance(cur, list):
        shape.append(len(cur))
        if not cur:
            break
        cur = cur[0]
    _check_shape(shape, max_elements)
    flat: list[float] = []

    def walk(node: object, depth: int) -> None:
        if depth == len(shape):
            if isinstance(node, bool) or not isinstance(node, (int, float)):
                raise InputError(f"expected a number at depth {depth}, got {type(node).__name__}")
            flat.append(float(node))
            return
        if not isinstance(node, list) or len(node) != shape[depth]:
            got = f"length {len(node)}" if isinstance(node, list) else type(node).__name__
            raise InputError(f"ragged nested list: expected length {shape[depth]} at depth {depth}, got {got}")
        for child in node:
            walk(child, depth + 1)

    walk(obj, 0)
    return torch.tensor(flat, dtype=torch.float32).reshape(shape)


def decode_any(obj: object, *, max_elements: int | None = None) -> tuple[Tensor, str]:
    """Decode either form; returns ``(tensor, "base64" | "json")``."""
    if isinstance(obj, list):
        return decode_nested(obj, max_elements=max_elements), "json"
    return decode_tensor(obj, max_elements=max_elements), "base64"


def batch_digest(x: Tensor) -> str:
    """SHA-256 (hex) of a batch's shape and float32 little-endian bytes; the same images give the
    same digest whatever encoding carried them. Used by the audit log."""
    arr = np.ascontiguousarray(x.detach().cpu().numpy().astype("<f4", copy=False))
    h = hashlib.sha256(repr(list(arr.shape)).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


__all__ = ["WIRE_DTYPES", "batch_digest", "decode_any", "decode_nested", "decode_tensor", "encode_tensor"]
