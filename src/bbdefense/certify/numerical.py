"""Numerical certification for any noise and norm: DUCD Algorithms 1-2 (Li et al., arXiv 2408.10647,
§III-C, Eq. 7), the two-stage method of UniCR (Hong et al. 2022; reference youbin2014/UniCR
``universal_certified_robustness.py`` at a80f7cf, read, not copied).

For a perturbation ``delta`` the Neyman-Pearson worst case of the base classifier is the set of
noise values with the smallest likelihood ratio ``L(eps) = mu(eps - delta) / mu(eps)``, ``eps ~ mu``:

* Algorithm 2: Monte-Carlo samples of ``L`` give its CDF; ``t_A`` is its ``pA`` quantile and ``t_B``
  its ``1 - pB`` quantile (binary case: ``pB = 1 - pA``).
* ``K(lambda) = P[mu(eps)/mu(eps + lambda delta) <= t_A] - P[mu(eps)/mu(eps + lambda delta) >= t_B]``
  (Eq. 7; fresh samples ``eps ~ mu``: the ratio seen from ``x + lambda delta``). ``K > 0`` means the
  smoothed class survives the shift ``lambda delta``. Ties at ``t_A``/``t_B`` are split as in the
  randomized Neyman-Pearson test (see :class:`_KFunction`).
* Algorithm 1 (scalar optimisation): bracket the sign change of ``K`` by doubling/halving
  ``lambda``, then bisect until ``|K| <= k_tol`` or ``bisect_iters`` steps.
* Direction optimisation: particle-swarm search (global-best PSO, UniCR's 4 particles x 3
  iterations, inertia 0.9, c1 = 0.5, c2 = 0.3) over directions ``delta`` in ``[-1, 1]^d`` normalised
  to unit ``l_p`` norm, minimising ``||lambda* delta||_p = lambda*``; particle 0 starts at UniCR's
  initial direction (one-hot for l1/l2, all-ones for linf).

The result is an **approximation, not a certificate** (pitfall 14): the probabilities are MC
estimates without a confidence bound and PSO's minimum is not global. Every radius from here is
reported with ``approximate=True``. Deviations from UniCR, all documented in docs/certification.md:
exact (not discretised) densities and samplers; separate samples for the CDF and for ``K``; ties
of the ratio split (uniform/Laplace atoms); the radius returned is the last ``lambda`` with ``K > 0`` (the
conservative end of the bracket); ``NaN`` (not UniCR's sentinel 1000) when no bracket is found.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import InputError
from .noises import Noise, check_norm


class _KFunction:
    """``K(lambda)`` along one unit direction, on fixed Monte-Carlo samples (common random numbers).

    ``eps_x`` (noise samples) give the CDF of ``L = mu(eps - lambda delta) / mu(eps)`` and the
    thresholds ``t_A`` (its pA quantile) and ``t_B`` (its 1 - pB quantile); ``eps_y`` (fresh samples)
    give the law of the same ratio seen from the shifted point, ``mu(eps) / mu(eps + lambda delta)``.
    Ties at a threshold (the ratio has atoms for uniform and Laplace noise) are split as in the
    randomized Neyman-Pearson test: the set ``A`` takes the fraction of the tie that makes its mass
    exactly pA, so ``A`` and ``B`` never overlap (counting ``P(r <= t_A)`` and ``P(r >= t_B)`` in full,
    as a literal reading of Eq. 7 would, counts a tie ``t_A = t_B`` twice).
    """

    def __init__(self, noise: Noise, delta: Tensor, eps_x: Tensor, eps_y: Tensor, p_a: float, p_b: float) -> None:
        nz = delta != 0  # i.i.d. noise: coordinates with delta_i = 0 cancel from every ratio
        self.noise, self.delta = noise, delta[nz].double()
        self.ex, self.ey = eps_x[:, nz].double(), eps_y[:, nz].double()
        self.lx0 = noise.log_density(self.ex).sum(1)
        self.ly0 = noise.log_density(self.ey).sum(1)
        self.p_a, self.p_b = p_a, p_b
        self.evals = 0

    @staticmethod
    def _mass(log_lx: Tensor, log_ly: Tensor, p: float, upper: bool) -> float:
        """P_Y of the Neyman-Pearson set of P_X-mass p: lowest ratios (upper=False) or highest (True)."""
        n = log_lx.shape[0]
        k = min(max(math.ceil(n * p), 1), n)
        t = torch.kthvalue(log_lx, n - k + 1 if upper else k).values
        tol = 1e-9 * (1.0 + abs(float(t))) if math.isfinite(float(t)) else 0.0
        if upper:
            strict_x, strict_y = log_lx > t + tol, log_ly > t + tol
        else:
            strict_x, strict_y = log_lx < t - tol, log_ly < t - tol
        tie_x = (log_lx == t) if tol == 0.0 else (log_lx - t).abs() <= tol
        tie_y = (log_ly == t) if tol == 0.0 else (log_ly - t).abs() <= tol
        n_tie = int(tie_x.sum())
        q = 0.0 if n_tie == 0 else min(max((n * p - int(strict_x.sum())) / n_tie, 0.0), 1.0)
        return (int(strict_y.sum()) + q * int(tie_y.sum())) / log_ly.shape[0]

    def __call__(self, lam: float) -> float:
        self.evals += 1
        shift = lam * self.delta
        log_lx = self.noise.log_density(self.ex - shift).sum(1) - self.lx0  # log mu(eps - d) / mu(eps)
        log_ly = self.ly0 - self.noise.log_density(self.ey + shift).sum(1)  # log mu(eps) / mu(eps + d)
        log_lx = torch.nan_to_num(log_lx, nan=math.inf)
        log_ly = torch.nan_to_num(log_ly, nan=math.inf)
        return self._mass(log_lx, log_ly, self.p_a, False) - self._mass(log_lx, log_ly, self.p_b, True)


def scalar_search(kfun: _KFunction, *, lam0: float, k_tol: float = 0.01, bisect_iters: int = 20,
                  bracket_iters: int = 60) -> float:
    """DUCD Algorithm 1: the scale ``lambda`` that puts ``lambda delta`` on the robustness boundary
    (``K = 0``). Returns the last ``lambda`` found with ``K > 0``, or NaN without a bracket."""
    lo, hi = math.nan, math.nan
    lam, k = lam0, kfun(lam0)
    if k > 0:
        lo = lam
        for _ in range(bracket_iters):
            lam *= 2.0
            k = kfun(lam)
            if k <= 0:
                hi = lam
                break
            lo = lam
    else:
        hi = lam
        for _ in range(bracket_iters):
            lam *= 0.5
            k = kfun(lam)
            if k > 0:
                lo = lam
                break
            hi = lam
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return math.nan
    for _ in range(bisect_iters):
        mid = 0.5 * (lo + hi)
        k = kfun(mid)
        if abs(k) <= k_tol:
            return mid  # on the boundary within the tolerance K_m (Algorithm 1's stopping rule)
        if k > 0:
            lo = mid
        else:
            hi = mid
    return lo


def _unit(v: Tensor, norm: str) -> Tensor:
    p = {"l1": 1.0, "l2": 2.0, "linf": math.inf}[norm]
    nv = torch.linalg.vector_norm(v, ord=p)
    return v / nv if nv > 0 else v


def numerical_radius(noise: Noise, p_lower: float, norm: str, d: int, *, p_upper: float | None = None,
                     n_mc: int = 1000, particles: int = 4, pso_iters: int = 3, inertia: float = 0.9,
                     c1: float = 0.5, c2: float = 0.3, k_tol: float = 0.01, bisect_iters: int = 20,
                     seed: int = 0) -> float:
    """Approximate certified radius of the ``noise``-smoothed classifier in ``norm`` (DUCD Alg. 1-2 + PSO).

    Args:
        noise: any i.i.d. noise with a ``log_density``.
        p_lower: lower bound on pA (must be > 1/2 to certify; otherwise 0.0 is returned).
        norm: "l1", "l2" or "linf".
        d: input dimension (C * H * W); the directions live in ``[-1, 1]^d``.
        p_upper: upper bound on pB (default ``1 - p_lower``, the binary case of CERTIFY).
        n_mc: Monte-Carlo samples per probability (UniCR: 500 to certify, 1000 to optimise; DUCD 1000).
        particles, pso_iters, inertia, c1, c2: PSO settings (UniCR defaults).
        k_tol, bisect_iters: Algorithm 1's threshold ``K_m`` and iteration count ``N``.
        seed: seeds the Monte-Carlo samples and the swarm (own generator).

    Returns:
        The radius (float, approximate), or NaN when the boundary could not be bracketed.
    """
    check_norm(norm)
    if not (0.0 <= p_lower <= 1.0):
        raise InputError(f"p_lower must be in [0, 1], got {p_lower!r}")
    if d < 1 or n_mc < 10 or particles < 1 or pso_iters < 0:
        raise InputError(f"need d >= 1, n_mc >= 10, particles >= 1, pso_iters >= 0; got {d}, {n_mc}, "
                         f"{particles}, {pso_iters}")
    p_b = 1.0 - p_lower if p_upper is None else float(p_upper)
    if p_lower <= 0.5 or p_lower <= p_b:
        return 0.0
    g = torch.Generator().manual_seed(int(seed))
    eps_x, eps_y = noise.sample((n_mc, d), g), noise.sample((n_mc, d), g)
    guess = {"lam": noise.sigma if norm != "linf" else noise.sigma / math.sqrt(d)}

    def cost(direction: Tensor) -> float:
        u = _unit(direction, norm)
        if not bool((u != 0).any()):
            return math.inf
        r = scalar_search(_KFunction(noise, u, eps_x, eps_y, p_lower, p_b), lam0=guess["lam"], k_tol=k_tol,
                          bisect_iters=bisect_iters)
        if not math.isfinite(r):
            return math.inf
        guess["lam"] = r  # the next bracket starts near the last boundary
        return r

    start = torch.ones(d) if norm == "linf" else torch.nn.functional.one_hot(torch.tensor(0), d).float()
    pos = [start.clone()]
    for _ in range(particles - 1):
        pos.append((start + 0.5 * (torch.rand(d, generator=g) * 2 - 1)).clamp(-1, 1))
    vel = [(torch.rand(d, generator=g) * 2 - 1) * 0.1 for _ in pos]
    pcost = [cost(p) for p in pos]
    pbest = [p.clone() for p in pos]
    gi = min(range(len(pos)), key=lambda i: pcost[i])
    gbest, gcost = pbest[gi].clone(), pcost[gi]
    for _ in range(pso_iters):
        for i in range(len(pos)):
            r1, r2 = torch.rand(d, generator=g), torch.rand(d, generator=g)
            vel[i] = inertia * vel[i] + c1 * r1 * (pbest[i] - pos[i]) + c2 * r2 * (gbest - pos[i])
            pos[i] = (pos[i] + vel[i]).clamp(-1, 1)
            c = cost(pos[i])
            if c < pcost[i]:
                pcost[i], pbest[i] = c, pos[i].clone()
                if c < gcost:
                    gcost, gbest = c, pos[i].clone()
    return gcost if math.isfinite(gcost) else math.nan


__all__ = ["numerical_radius", "scalar_search"]
