"""Calibration of a defense's noise level to a target clean-accuracy drop, by bisection.

The RFD paper (Nguyen et al., ICLR 2024, "Evaluation protocol") compares defenses at the noise
level that costs a fixed small clean-accuracy drop (about 1% or 2%); the reference code takes noise
values by hand (``--noise_list``) and averages clean accuracy over 5 stochastic passes. This module
searches the level automatically (pitfall 10): the clean accuracy at a candidate ``nu`` is the mean
over ``passes`` passes on a **held-out** split, each pass with a fixed seed (common random numbers,
so the accuracy curve is smooth in ``nu``); an upper bracket is found by doubling, then bisection
stops when the drop is within ``tol`` of the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from ..errors import InputError
from ..events import EventCallback, emit
from .base import Defense
from .metrics import clean_accuracy


@dataclass
class CalibrationResult:
    """The calibrated level: ``value`` of ``param`` giving clean accuracy ``accuracy`` (drop ``drop``
    from ``base_accuracy``, target ``target_drop``); ``history`` lists every (value, accuracy) tried."""

    param: str
    value: float
    accuracy: float
    base_accuracy: float
    drop: float
    target_drop: float
    passes: int
    converged: bool
    history: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def mean_accuracy(defense: Defense, x: Tensor, y: Tensor, *, passes: int = 5, seed: int = 0,
                  batch_size: int = 500) -> float:
    """Clean accuracy of ``defense`` averaged over ``passes`` seeded passes."""
    return clean_accuracy(defense, x, y, passes=passes, seed=seed, batch_size=batch_size)[0]


def calibrate_noise(defense: Defense, x: Tensor, y: Tensor, *, target_drop: float, param: str = "nu",
                    passes: int = 5, tol: float = 0.0025, init: float = 0.05, max_iter: int = 20, seed: int = 0,
                    base_accuracy: float | None = None, batch_size: int = 500,
                    on_event: EventCallback | None = None) -> CalibrationResult:
    """Set ``defense.<param>`` so that its clean accuracy on ``(x, y)`` is ``target_drop`` below the
    undefended model's (``defense.module``), within ``tol``; returns the :class:`CalibrationResult`.

    Args:
        defense: a defense with a noise-level attribute ``param`` (``rfd``/``rnd``/``snd``: ``nu``).
        x, y: held-out images ``(N, C, H, W)`` and labels ``(N,)`` (not the attack's test set).
        target_drop: the wanted accuracy drop as a fraction (0.02 = 2 points).
        passes: stochastic passes averaged per candidate (the reference code uses 5).
        tol: accept a drop within ``target_drop +- tol``.
        init: the first upper bracket, doubled until the drop reaches the target.
        max_iter: bisection steps after bracketing.

    Raises:
        InputError: bad arguments, or no level up to ``init * 2**30`` reaches the drop.
    """
    if not hasattr(defense, param):
        raise InputError(f"{defense.name} has no noise parameter {param!r} to calibrate")
    if not 0 < target_drop < 1:
        raise InputError(f"target_drop must be in (0, 1) (a fraction, 0.02 = 2 points), got {target_drop!r}")
    if not init > 0:
        raise InputError(f"init must be > 0, got {init!r}")
    base = base_accuracy if base_accuracy is not None else clean_accuracy(defense.module, x, y,
                                                                         batch_size=batch_size)[0]
    history: list[dict[str, float]] = []

    def acc_at(v: float) -> float:
        setattr(defense, param, float(v))
        a = mean_accuracy(defense, x, y, passes=passes, seed=seed, batch_size=batch_size)
        history.append({param: float(v), "accuracy": a, "drop": base - a})
        emit(on_event, "info", "calibrate", message=f"{defense.name} {param}={v:.5g}: accuracy {a:.4f} "
                                                     f"(drop {base - a:+.4f}, target {target_drop:.4f})")
        return a

    lo, hi = 0.0, float(init)
    for _ in range(31):
        if base - acc_at(hi) >= target_drop - tol:
            break
        lo, hi = hi, hi * 2
    else:
        raise InputError(f"{defense.name}: no {param} up to {hi:.3g} drops clean accuracy by {target_drop}")
    best = min(history, key=lambda h: abs(h["drop"] - target_drop))
    converged = abs(best["drop"] - target_drop) <= tol
    it = 0
    while not converged and it < max_iter:
        mid = 0.5 * (lo + hi)
        d = base - acc_at(mid)
        if d < target_drop:
            lo = mid
        else:
            hi = mid
        best = min(history, key=lambda h: abs(h["drop"] - target_drop))
        converged = abs(best["drop"] - target_drop) <= tol
        it += 1
    setattr(defense, param, best[param])
    defense.reseed(seed)
    return CalibrationResult(param, best[param], best["accuracy"], base, best["drop"], target_drop, passes,
                             converged, history)


__all__ = ["CalibrationResult", "calibrate_noise", "mean_accuracy"]
