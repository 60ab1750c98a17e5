"""Anytime-valid sequential certification: "is x robust at radius r?" with as few noisy queries as the
evidence needs (Voráček, NeurIPS 2024, arXiv 2406.17830, reference vvoracek/RS_conf_seq ``thresholds.py``;
Chen et al., AAAI 2022, input-specific sampling; Cullen et al. 2026, "Halt Fast!", e-processes).

**The question.** After Cohen's selection (``n0`` separate draws pick ``cA``), the estimation draws give a
Bernoulli stream ``X_t = 1[f(x + eps_t) = cA]`` with mean ``p = P(f(x + eps) = cA)``. The smoothed classifier
is certified at radius ``r`` when ``p > p_r``, the pA whose closed-form radius is ``r``
(:meth:`~bbdefense.certify.noises.Noise.p_for_radius`; ``p_0 = 1/2``). Selection stays separate from
estimation as in Cohen: the test is about ``P(f = cA)`` for the ``cA`` fixed before the estimation stream, and
``p_r >= 1/2`` makes a class with ``p > p_r`` the smoothed classifier's prediction.

**The boundary** (our own code; the reference uses a Krichevsky-Trofimov plug-in ratio, we use the conjugate
mixture of Robbins 1970 / Howard et al. 2021, truncated to the alternative so it is valid for a composite
null). For ``H0: p <= p0`` the e-process is the truncated-Beta mixture of likelihood ratios

    M_t = int_{p0}^1 (q / p0)^S_t ((1 - q) / (1 - p0))^F_t pi(dq),   pi = Beta(a, b) restricted to (p0, 1],

with ``S_t``/``F_t`` the hits/misses among the first ``t`` draws; in closed form
``M_t = B(a+S, b+F) Bc_{p0}(a+S, b+F) / (B(a, b) Bc_{p0}(a, b) p0^S (1-p0)^F)`` (``Bc`` the regularized upper
incomplete beta). *Guarantee:* for each ``q > p0`` the factor of one draw has mean
``p q / p0 + (1 - p)(1 - q) / (1 - p0)``, linear in ``p``, equal to 1 at ``p = p0`` and increasing (``q > p0``),
so ``<= 1`` for every ``p <= p0``: each ratio, hence (Fubini) the mixture, is a nonnegative supermartingale
with ``M_0 = 1`` under every null ``p``. Ville's inequality gives ``P(exists t: M_t >= 1/alpha) <= alpha``:
declaring "robust" the first time ``M_t >= 1/alpha`` is wrong with probability at most ``alpha`` **whatever
the stopping rule** (checking after every sample, stopping at a cap, stopping when hopeless, the data-driven
request sizes below). "Not robust" uses the mirror mixture on ``[0, p0)`` (null ``p >= p0``), same argument.

**Several radii.** Thresholds ``p_0 = 1/2 < p_r1 < ...`` are tested on one stream. "Robust at r_j" is
declared only when the boundary has been crossed at *every* ``p_ri <= p_rj`` (each at its own time), so a
wrong robust claim at any radius needs the e-process of the smallest threshold above the true ``p`` to cross:
**all robust claims of one image hold jointly with probability >= 1 - alpha**. Each "not robust" claim errs
with probability <= alpha (and implies "not robust" at larger radii); robust and not-robust errors exclude
each other per radius, so every single decision is wrong with probability <= alpha.

**Stopping.** Any rule that looks only at the past keeps the guarantee. Along an all-hits continuation
``M_t`` only grows (each hit multiplies it by the posterior mean of ``q / p0`` under a prior on ``(p0, 1]``,
which is > 1), so the fewest further draws that could cross is a search in the boundary table, and "robust
within the cap" is impossible exactly when ``max_n`` hits cannot reach ``1/alpha``:
such a radius is "undecided" at once (no draws wasted on images whose pA is too close to 1 for the budget).
With ``futility`` (default 1e-3) a radius is also given up ("undecided") when even draws at the optimistic rate
``cp_upper(S, t, futility)`` would not reach ``1/alpha`` by ``max_n`` (Chen et al.'s input-specific budget, in
anytime form): images whose pA sits just at a threshold stop early instead of burning the whole cap.
Each image requests the fewest draws any of its open radii needs, so queries are not spent past a decision,
and requests depend only on the image's own history: decisions and samples do not depend on batching.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import betainc, betaincc, betaincinv, betaln

from ..errors import InputError

ROBUST, NOT_ROBUST, UNDECIDED, OPEN = "robust", "not_robust", "undecided", "open"


@dataclass(frozen=True)
class BetaMixture:
    """The truncated Beta(a, b) mixture e-process (see the module docstring); ``a = b = 1/2`` (Jeffreys /
    Krichevsky-Trofimov, as the reference) puts mass near 1, where the pA of well-classified images lie."""

    a: float = 0.5
    b: float = 0.5

    def log_above(self, s: np.ndarray | float, f: np.ndarray | float, p0: float) -> np.ndarray | float:
        """``log M_t`` against ``H0: p <= p0`` after ``s`` hits and ``f`` misses (arrays broadcast; scalars in,
        a float out)."""
        if p0 >= 1.0:
            return -math.inf if np.ndim(s) == 0 and np.ndim(f) == 0 else np.full(np.broadcast(s, f).shape, -np.inf)
        return self._log_mix(s, f, p0, upper=True)

    def log_below(self, s: np.ndarray | float, f: np.ndarray | float, p0: float) -> np.ndarray | float:
        """``log M_t`` against ``H0: p >= p0`` (the mixture over ``q`` in ``[0, p0)``)."""
        if p0 >= 1.0:
            # H0: p >= 1 means p = 1: one miss refutes it (a likelihood ratio of +inf), no miss is no evidence
            out = np.where(np.asarray(f) > 0, np.inf, 0.0)
            return float(out) if out.ndim == 0 else out
        return self._log_mix(s, f, p0, upper=False)

    def _log_mix(self, s: np.ndarray | float, f: np.ndarray | float, p0: float, *, upper: bool) -> np.ndarray | float:
        tail = betaincc if upper else betainc
        a, b = self.a + s, self.b + f
        mass = tail(a, b, p0)
        den = _log_prior_mass(self.a, self.b, p0, upper)
        if np.ndim(mass) == 0:
            m = float(mass)
            if m <= 0.0:
                return -math.inf
            return float(betaln(a, b)) + math.log(m) - den - float(s) * math.log(p0) - float(f) * math.log1p(-p0)
        with np.errstate(divide="ignore"):
            num = betaln(a, b) + np.log(mass)
        return num - den - np.asarray(s, dtype=float) * math.log(p0) - np.asarray(f, dtype=float) * math.log1p(-p0)


@functools.lru_cache(maxsize=4096)
def _log_prior_mass(a: float, b: float, p0: float, upper: bool) -> float:
    """``log B(a, b) + log P_{Beta(a, b)}(q > p0)`` (``upper``) or ``... (q < p0)``: the truncated prior's norm."""
    mass = float(betaincc(a, b, p0) if upper else betainc(a, b, p0))
    return float(betaln(a, b)) + math.log(mass)


class Thresholds:
    """The boundary of one threshold ``p0`` as hit counts per time (computed once, extended on demand, shared).

    ``M_t`` grows when a miss becomes a hit, so at each ``t`` the above-crossing set is ``{S_t >= above[t]}``
    and the below-crossing set ``{S_t <= below[t]}``; adding a draw moves each by 0 or 1 (a hit only raises
    ``M_t``-above, a miss only lowers it), so one evaluation per ``t`` extends the table. ``above[t] = t + 1``:
    no crossing possible at ``t``; ``below[t] = -1`` likewise. (Voráček's reference precomputes such tables too.)
    """

    def __init__(self, mixture: BetaMixture, p0: float, level: float) -> None:
        self.mixture, self.p0, self.level = mixture, p0, level
        self._above = np.ones(1024, dtype=np.int64)
        self._below = np.full(1024, -1, dtype=np.int64)
        self._len = 1  # entries 0..len-1 are computed (t = 0: no crossing)

    def upto(self, t_max: int) -> tuple[np.ndarray, np.ndarray]:
        """``(above, below)`` for ``t = 0..t_max`` (int64 views of length ``t_max + 1``; do not modify)."""
        if t_max >= self._len:
            if t_max >= self._above.size:
                size = max(t_max + 1, 2 * self._above.size)
                self._above = np.concatenate([self._above[:self._len], np.ones(size - self._len, dtype=np.int64)])
                self._below = np.concatenate([self._below[:self._len], np.full(size - self._len, -1, np.int64)])
            ab, be, mix, p0, lv = self._above, self._below, self.mixture, self.p0, self.level
            a, b = int(ab[self._len - 1]), int(be[self._len - 1])
            for t in range(self._len, t_max + 1):
                a = a if a <= t and float(mix.log_above(a, t - a, p0)) >= lv else a + 1
                b = b + 1 if float(mix.log_below(b + 1, t - b - 1, p0)) >= lv else b
                ab[t], be[t] = a, b
            self._len = t_max + 1
        return self._above[:t_max + 1], self._below[:t_max + 1]

    def steps(self, s: int, t: int, cap: int, *, hits: bool) -> int | None:
        """Fewest further draws ``k`` in ``[1, cap]`` after which an all-hits (``hits=True``: crossing above)
        or all-misses (crossing below) continuation from ``s`` hits in ``t`` draws crosses; None if none.
        ``above[t + k] - k`` is non-increasing and ``below`` non-decreasing in k, so the first k is a search;
        an all-hits continuation that cannot cross even at ``t + cap`` (one e-process evaluation) is None
        without building the table that far."""
        if cap < 1:
            return None
        if hits and float(self.mixture.log_above(s + cap, t - s, self.p0)) < self.level:
            return None
        span = 64
        while True:
            end = t + min(cap, span)
            above, below = self.upto(end)
            ks = np.arange(1, end - t + 1)
            ok = (above[t + 1:end + 1] - ks <= s) if hits else (below[t + 1:end + 1] >= s)
            idx = np.flatnonzero(ok)
            if idx.size:
                return int(idx[0]) + 1
            if end - t >= cap:
                return None
            span *= 4


_TABLES: dict[tuple[float, float, float, float], Thresholds] = {}


def thresholds(mixture: BetaMixture, p0: float, alpha: float) -> Thresholds:
    """The shared :class:`Thresholds` of ``(mixture, p0, alpha)``."""
    key = (mixture.a, mixture.b, float(p0), float(alpha))
    if key not in _TABLES:
        _TABLES[key] = Thresholds(mixture, float(p0), math.log(1.0 / alpha))
    return _TABLES[key]


@dataclass
class SequentialTest:
    """The anytime-valid test of one image at thresholds ``p0s`` (increasing, ``p0s[0] = 1/2``).

    Feed it the hit indicators in stream order with :meth:`update`; :meth:`next_request` says how many
    draws to ask for next (0 when done). ``status[j]`` is ``"robust"``, ``"not_robust"``, ``"undecided"``
    (robust impossible within ``max_n`` draws) or ``"open"``; ``t`` draws seen, ``s`` hits.
    """

    p0s: Sequence[float]
    alpha: float
    max_n: int
    mixture: BetaMixture = field(default_factory=BetaMixture)
    futility: float | None = 1e-3
    t: int = 0
    s: int = 0
    status: list[str] = field(default_factory=list)
    crossed: list[bool] = field(default_factory=list)
    decided_at: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not (0.0 < self.alpha < 1.0):
            raise InputError(f"alpha must be in (0, 1), got {self.alpha!r}")
        if not (isinstance(self.max_n, int) and self.max_n >= 1):
            raise InputError(f"max_n must be an integer >= 1, got {self.max_n!r}")
        ps = [float(p) for p in self.p0s]
        if not ps or any(not (0.5 <= p <= 1.0) for p in ps) or any(b < a for a, b in itertools.pairwise(ps)):
            raise InputError(f"thresholds must be increasing values in [1/2, 1], got {ps}")
        self.p0s = ps
        self.level = math.log(1.0 / self.alpha)
        self.status = [OPEN] * len(ps)
        self.crossed = [False] * len(ps)
        self.decided_at = [-1] * len(ps)
        self._resolve()

    @property
    def done(self) -> bool:
        return OPEN not in self.status

    @property
    def f(self) -> int:
        return self.t - self.s

    def _resolve(self) -> None:
        """Propagate claims along the thresholds and mark radii that can no longer be certified."""
        ok = True
        for j, p0 in enumerate(self.p0s):
            if self.status[j] == UNDECIDED and j > 0 and self.status[j - 1] == NOT_ROBUST:
                self.status[j] = NOT_ROBUST  # implied by the claim at the smaller radius
            if self.status[j] != OPEN:
                ok = ok and self.status[j] == ROBUST
                continue
            if ok and self.crossed[j]:
                self.status[j], self.decided_at[j] = ROBUST, self.t
                continue
            if j > 0 and self.status[j - 1] == NOT_ROBUST:
                self.status[j], self.decided_at[j] = NOT_ROBUST, self.t
            elif (j > 0 and self.status[j - 1] == UNDECIDED) or (not self.crossed[j] and self._hopeless(p0)):
                self.status[j], self.decided_at[j] = UNDECIDED, self.t
            ok = False
        if self.t >= self.max_n:
            self.status = [UNDECIDED if st == OPEN else st for st in self.status]

    def _hopeless(self, p0: float) -> bool:
        """True when robustness at ``p0`` cannot (all hits) or will hardly (hits at the optimistic rate
        ``cp_upper(s, t, futility)``) be declared within ``max_n`` draws. A function of the past only: stopping
        on it keeps the guarantee; it only gives up on images that would (almost surely) end undecided."""
        cap = self.max_n - self.t
        if float(self.mixture.log_above(self.s + cap, self.f, p0)) < self.level:
            return True
        if self.futility is None or self.t == 0 or self.s == self.t:
            return False
        q = float(betaincinv(self.s + 1, self.t - self.s, 1.0 - self.futility))  # cp_upper(s, t, futility)
        return float(self.mixture.log_above(self.s + q * cap, self.f + (1 - q) * cap, p0)) < self.level

    def next_request(self) -> int:
        """The fewest further draws after which some open threshold could be decided (0 when done)."""
        if self.done:
            return 0
        cap = self.max_n - self.t
        need = cap
        for j, p0 in enumerate(self.p0s):
            if self.status[j] != OPEN:
                continue
            table = thresholds(self.mixture, p0, self.alpha)
            k_up = None if self.crossed[j] else table.steps(self.s, self.t, cap, hits=True)
            k_dn = table.steps(self.s, self.t, cap, hits=False)
            for k in (k_up, k_dn):
                if k is not None:
                    need = min(need, k)
        return max(1, min(need, cap))

    def update(self, hits: np.ndarray | Sequence[bool]) -> None:
        """Take the next draws' hit indicators (in stream order), checking the boundaries after every one."""
        h = np.asarray(hits, dtype=bool).reshape(-1)
        if h.size == 0 or self.done:
            return
        s = self.s + np.cumsum(h)
        t = self.t + np.arange(1, h.size + 1)
        for j, p0 in enumerate(self.p0s):
            if self.status[j] != OPEN:
                continue
            above, below = thresholds(self.mixture, p0, self.alpha).upto(int(t[-1]))
            up = np.flatnonzero(s >= above[t]) if not self.crossed[j] else None
            dn = np.flatnonzero(s <= below[t])
            iu = int(up[0]) if up is not None and len(up) else h.size
            idn = int(dn[0]) if len(dn) else h.size
            if iu < h.size and iu <= idn:
                self.crossed[j] = True
            elif idn < h.size:
                self.status[j], self.decided_at[j] = NOT_ROBUST, int(t[idn])
        self.t, self.s = int(t[-1]), int(s[-1])
        self._resolve()

    def decisions(self) -> list[str]:
        return list(self.status)


def robust_index(status: Sequence[str]) -> int:
    """Index of the largest threshold declared robust (-1 when none, i.e. abstain)."""
    k = -1
    for j, st in enumerate(status):
        if st != ROBUST:
            break
        k = j
    return k


__all__ = ["NOT_ROBUST", "OPEN", "ROBUST", "UNDECIDED", "BetaMixture", "SequentialTest", "Thresholds", "robust_index",
           "thresholds"]
