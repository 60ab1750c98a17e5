"""Confidence intervals of the evaluation layer: the exact two-sided Clopper-Pearson interval of a
proportion (robust accuracy over ``n`` attacked images, certified accuracy over ``n`` certified images),
built from the one-sided bounds of :mod:`bbdefense.certify.stats`.

``P(lo <= p <= hi) >= level`` for every true proportion ``p``: each side has error ``(1 - level) / 2``
(Clopper & Pearson, Biometrika 1934). The images are treated as a random sample of the test
distribution; the interval says nothing about the attack's own randomness.
"""

from __future__ import annotations

import math

from ..certify.stats import cp_lower, cp_upper
from ..errors import InputError

LEVEL = 0.95


def proportion_ci(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Two-sided ``level`` Clopper-Pearson interval ``(lo, hi)`` of a proportion with ``k`` of ``n``.

    ``n == 0`` gives ``(nan, nan)``; ``k == 0`` gives ``lo = 0``, ``k == n`` gives ``hi = 1``.
    """
    if not (0.0 < level < 1.0):
        raise InputError(f"level must be in (0, 1), got {level!r}")
    k, n = int(k), int(n)
    if n == 0:
        return math.nan, math.nan
    if not 0 <= k <= n:
        raise InputError(f"k must be in [0, n={n}], got {k}")
    side = (1.0 - level) / 2.0
    return cp_lower(k, n, side), cp_upper(k, n, side)


__all__ = ["LEVEL", "proportion_ci"]
