"""Metrics of owner-side defenses: clean accuracy averaged over stochastic passes and the UniG
**logit difference** (mean l2 distance between defended and undefended logits, UniG Table 1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ..errors import InputError
from .base import Defense

if TYPE_CHECKING:
    from ..models import BlackBox


def _check(x: Tensor, y: Tensor | None = None) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        raise InputError(f"expected images (N, C, H, W), got {tuple(x.shape) if isinstance(x, Tensor) else x!r}")
    if y is not None and (y.dim() != 1 or y.shape[0] != x.shape[0]):
        raise InputError(f"expected labels of shape ({x.shape[0]},), got {tuple(y.shape)}")


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, *, batch_size: int = 500, oracle: BlackBox | None = None) -> Tensor:
    """Logits ``(N, K)`` of ``model`` on ``x`` in batches (no query accounting beyond the model's own).

    ``oracle``: a logits :class:`~bbdefense.models.BlackBox` of ``model`` (``BlackBox.from_module(model)``)
    that answers instead, so every image is a counted query under its budget (same logits).
    """
    _check(x)
    ask = model if oracle is None else oracle.query
    return torch.cat([ask(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def clean_accuracy(model: nn.Module, x: Tensor, y: Tensor, *, passes: int = 1, seed: int = 0,
                   batch_size: int = 500, oracle: BlackBox | None = None) -> tuple[float, list[float]]:
    """Top-1 accuracy of ``model`` on ``(x, y)``, averaged over ``passes`` passes.

    A randomized :class:`Defense` is re-seeded with ``seed + i`` for pass ``i`` (so two calls with the
    same seed see the same noise, and calibration uses common random numbers); a deterministic
    model is evaluated once. Returns ``(mean, per-pass accuracies)``. ``oracle``: see :func:`predict_logits`.
    """
    _check(x, y)
    if passes < 1:
        raise InputError(f"passes must be >= 1, got {passes}")
    randomized = bool(getattr(model, "randomized", False))
    accs = []
    for i in range(passes if randomized else 1):
        if isinstance(model, Defense):
            model.reseed(seed + i)
        pred = predict_logits(model, x, batch_size=batch_size, oracle=oracle).argmax(dim=1).cpu()
        accs.append(float((pred == y.cpu()).float().mean()))
    return sum(accs) / len(accs), accs


def logit_difference(defended: nn.Module, undefended: nn.Module, x: Tensor, *, batch_size: int = 500,
                     oracle: BlackBox | None = None) -> float:
    """UniG's logit difference: ``mean_i ||defended(x_i) - undefended(x_i)||_2`` over ``x`` (``oracle``: a
    counted black box answering for ``defended``, see :func:`predict_logits`)."""
    _check(x)
    d = (predict_logits(defended, x, batch_size=batch_size, oracle=oracle)
         - predict_logits(undefended, x, batch_size=batch_size))
    return float(d.norm(p=2, dim=1).mean())


def clean_metrics(model: nn.Module, reference: nn.Module, x: Tensor, y: Tensor, *, passes: int = 1,
                  seed: int = 0) -> dict[str, object]:
    """The UniG Table 1 columns of one model: ``clean_accuracy`` (mean of ``passes``), its per-pass values,
    ``logit_difference`` vs ``reference`` (0 when ``model is reference``) and ``randomized``. A randomized
    :class:`Defense` is re-seeded with ``seed`` afterwards, so later users see the same noise stream."""
    acc, accs = clean_accuracy(model, x, y, passes=passes, seed=seed)
    if isinstance(model, Defense):
        model.reseed(seed)
    ld = 0.0 if model is reference else logit_difference(model, reference, x)
    return {"clean_accuracy": acc, "clean_accuracy_passes": accs, "logit_difference": ld,
            "randomized": bool(getattr(model, "randomized", False))}


__all__ = ["clean_accuracy", "clean_metrics", "logit_difference", "predict_logits"]
