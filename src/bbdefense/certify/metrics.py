"""Metrics of certified robustness: certified accuracy over a radius grid, the envelope over sigma,
DUCD's robust score (Eq. 8) and pA-R curves per noise family (DUCD Fig. 4-5).

Conventions (pitfall 5): an image counts at radius r when the certificate is correct **and**
``radius >= r`` (Cohen/Salman ``analyze.py``; ZO-AE-DS's log uses ``>``); abstentions are wrong.
Robust score: ``score = trapz(max_sigma CA_sigma(r), r)`` over a recorded grid ``linspace(0, r_max,
steps)`` (rs4a uses 81 points); DUCD does not state the grid or r_max, so both are recorded with every
score, and the score is *not* divided by r_max (``normalised`` gives the mean over the grid too).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import InputError
from .noises import Noise, check_norm
from .smooth import Certificate


def radius_grid(r_max: float, steps: int = 81) -> np.ndarray:
    """``linspace(0, r_max, steps)`` (rs4a's 81-point grid)."""
    if not (r_max > 0 and math.isfinite(r_max)) or steps < 2:
        raise InputError(f"need r_max > 0 and steps >= 2, got r_max={r_max!r}, steps={steps!r}")
    return np.linspace(0.0, float(r_max), int(steps))


def default_r_max(norm: str, sigma: float, d: int) -> float:
    """A grid end that covers the radii of noise level ``sigma``: ``4 sigma`` (l1, l2), ``4 sigma / sqrt(d)`` (linf)."""
    check_norm(norm)
    return 4.0 * sigma if norm != "linf" else 4.0 * sigma / math.sqrt(d)


def certified_accuracy(radii: Sequence[float], correct: Sequence[bool], grid: Iterable[float]) -> np.ndarray:
    """Fraction of images with ``correct and radius >= r`` for each r of ``grid`` (abstentions: correct=False)."""
    r = np.asarray(radii, dtype=float)
    c = np.asarray(correct, dtype=bool)
    if r.shape != c.shape:
        raise InputError(f"radii and correct differ in length: {r.shape} vs {c.shape}")
    if r.size == 0:
        raise InputError("certified_accuracy needs at least one image")
    r = np.nan_to_num(r, nan=-np.inf)
    g = np.asarray(list(grid), dtype=float)
    return ((r[None, :] >= g[:, None]) & c[None, :]).mean(axis=1)


def curve_from_certificates(certs: Sequence[Certificate], labels: Sequence[int], norm: str,
                            grid: Iterable[float]) -> np.ndarray:
    """Certified accuracy curve of certificates against true ``labels`` in ``norm``."""
    check_norm(norm)
    if len(certs) != len(labels):
        raise InputError(f"{len(certs)} certificates for {len(labels)} labels")
    radii = [c.radius.get(norm, math.nan) if not c.abstain else 0.0 for c in certs]
    correct = [(not c.abstain) and c.label == int(y) for c, y in zip(certs, labels, strict=True)]
    return certified_accuracy(radii, correct, grid)


def envelope(curves: Mapping[Any, ArrayLike]) -> np.ndarray:
    """The outer envelope ``max_sigma CA_sigma(r)`` of curves on a common grid (Salman et al. analyze.py)."""
    if not curves:
        raise InputError("envelope needs at least one curve")
    arr = np.asarray([np.asarray(v, dtype=float) for v in curves.values()])
    return arr.max(axis=0)


def robust_score(curves: Mapping[Any, ArrayLike] | ArrayLike, grid: ArrayLike) -> dict[str, Any]:
    """DUCD Eq. 8: area under the envelope over sigma of certified accuracy vs radius (trapezoid rule).

    ``curves`` is one curve or a mapping ``sigma -> curve`` on ``grid``. Returns ``{"score", "r_max",
    "steps", "normalised"}`` (normalised = score / r_max, the mean envelope over the grid).
    """
    g = np.asarray(grid, dtype=float)
    env = envelope(curves) if isinstance(curves, Mapping) else np.asarray(curves, dtype=float)
    if env.shape != g.shape:
        raise InputError(f"curve of length {env.shape} on a grid of length {g.shape}")
    score = float(np.trapezoid(env, g))  # numpy >= 2.0 (constraints.txt)
    r_max = float(g[-1])
    return {"score": score, "r_max": r_max, "steps": int(g.size), "normalised": score / r_max if r_max else 0.0}


def pa_r_curves(noises: Sequence[Noise], norms: Sequence[str], d: int, p_grid: Sequence[float], *,
                numerical: bool | str = "missing", numerical_kw: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """pA-R curves (DUCD Fig. 4-5): the certified radius as a function of the pA lower bound.

    Args:
        noises: noise families (use the same sigma to compare them, as DUCD).
        norms: norms to plot.
        d: input dimension.
        p_grid: pA values in (1/2, 1).
        numerical: ``"missing"`` numerical radii only where no closed form/conversion exists,
            True for every (noise, norm), False never.

    Returns:
        One series per (noise, norm, method): ``{"noise", "params", "norm", "method", "approximate",
        "x": p_grid, "y": radii}`` (method "closed" covers conversions; "numerical" is approximate).
    """
    from .numerical import numerical_radius

    ps = [float(p) for p in p_grid]
    if any(not (0.5 < p < 1.0) for p in ps):
        raise InputError(f"p_grid values must lie in (0.5, 1), got {ps}")
    out: list[dict[str, Any]] = []
    for nz in noises:
        for norm in norms:
            check_norm(norm)
            closed = [nz.radius(p, norm, d) for p in ps]
            have = all(c is not None for c in closed)
            if have:
                out.append({"noise": nz.name, "params": nz.params(), "norm": norm, "method": "closed",
                            "approximate": False, "x": ps, "y": [c[0] for c in closed]})  # type: ignore[index]
            if numerical is True or (numerical == "missing" and not have):
                ys = [numerical_radius(nz, p, norm, d, **(numerical_kw or {})) for p in ps]
                out.append({"noise": nz.name, "params": nz.params(), "norm": norm, "method": "numerical",
                            "approximate": True, "x": ps, "y": ys})
    return out


__all__ = ["certified_accuracy", "curve_from_certificates", "default_r_max", "envelope", "pa_r_curves",
           "radius_grid", "robust_score"]
