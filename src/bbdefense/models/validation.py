"""Input checks shared by every oracle and by the callers that validate before spending queries (the
server, ``Smooth``, the attacks' template): one place that says what an image batch must be."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import InputError


def validate_images(x: object, input_shape: tuple[int, ...] | None = None, *, bounded: bool = True) -> Tensor:
    """Check that ``x`` is an ``(N, C, H, W)`` float32 tensor of finite values in [0, 1].

    With ``bounded=False`` values outside [0, 1] are allowed (still finite): the noisy inputs of
    randomized smoothing, which Cohen et al. add without clipping.
    Raises :class:`InputError` naming the problem. Returns ``x`` unchanged.
    Costs a min and a max over the data; the NaN/inf check runs only on failure.
    """
    if not isinstance(x, Tensor):
        raise InputError(f"expected a torch.Tensor of images, got {type(x).__name__}")
    if x.dim() != 4:
        raise InputError(f"expected images of shape (N, C, H, W) with a batch dimension, got shape {tuple(x.shape)}")
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise InputError(f"expected images of shape (N, {', '.join(map(str, input_shape))}), got {tuple(x.shape)}")
    if x.dtype != torch.float32:
        raise InputError(f"expected float32 images, got dtype {x.dtype}")
    if x.shape[0] == 0:
        return x
    if x.device.type == "cpu":
        # numpy's single-threaded reductions: torch's OpenMP pool would wake up and spin between
        # backend calls, stealing the cores an onnxruntime backend is about to use (+30-50% per query)
        arr = x.detach().numpy()
        lo_v, hi_v = float(arr.min()), float(arr.max())
    else:
        lo, hi = torch.aminmax(x.detach())
        lo_v, hi_v = float(lo), float(hi)
    if not bounded:
        if not (math.isfinite(lo_v) and math.isfinite(hi_v)):
            raise InputError("images contain NaN" if torch.isnan(x).any() else "images contain inf")
        return x
    if not (lo_v >= 0.0 and hi_v <= 1.0):  # also False for NaN
        if torch.isnan(x).any():
            raise InputError("images contain NaN")
        if torch.isinf(x).any():
            raise InputError("images contain inf")
        raise InputError(f"expected images in [0, 1], got values in [{lo_v:.4g}, {hi_v:.4g}]")
    return x


__all__ = ["validate_images"]
