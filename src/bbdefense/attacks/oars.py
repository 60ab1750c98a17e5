"""OARS-style adaptive attacker against stateful defenses, and the cross-account (Sybil) split.

Feng, Mangaokar, Chen, Fernandes, Jha and Prakash, "Stateful Defenses for Machine Learning Models Are
Not Yet Secure Against Black-box Attacks", IEEE S&P 2023 (OARS: Oracle-guided Adaptive Rejection
Sampling; reference code ``nmangaokar/ccs_23_oars_stateful_attacks``, read, not copied). A stateful
defense (Blacklight, PIHA) tells the attacker *which* queries it rejects; OARS uses that oracle:

1. **adaptive proposal**: when a query is rejected the proposal distribution is widened (here: the
   scale ``sigma`` of a random perturbation added to the attack's query grows by ``growth``), and it
   stays widened for the following queries (decaying by ``decay`` after each accepted one, never below
   its start), so the attack runs at the smallest perturbation the detector lets through;
2. **rejection sampling**: a rejected query is re-drawn, ``x' = clip(x + sigma * u)`` with ``u``
   uniform in [-1, 1] per pixel, until one is accepted (at most ``max_tries`` draws); the accepted
   answer is given to the attack as the answer for ``x``.

Any registered score or decision attack runs unchanged under :class:`OARS`: the adaptation lives in
the oracle (a :meth:`~bbdefense.models.BlackBox.with_backend` view, so counting and budgets are the
model's), not in the attack. The paper adapts each attack's own step/proposal; this generic version
perturbs the query instead, which costs the attack some precision (its answers are for nearby points).
Success is decided by the attack's own criterion through the same (adaptive) oracle; evaluations should
re-check ``x_adv`` on the owner's model (:mod:`bbdefense.evaluation.detector` does).

:func:`sybil_blackbox`: one attack over several API keys, request ``i`` sent with key ``i mod k``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import InputError, QueryRejected
from ..models import BlackBox
from ..utils import make_generator
from .base import Attack, AttackResult


class AdaptiveBackend:
    """A backend that answers through ``inner`` and rejection-samples perturbed copies of a rejected
    batch (OARS, see the module docstring). Counts ``rejected`` requests and ``sent`` images (what a
    server charging rejected queries bills)."""

    def __init__(self, inner: Any, *, sigma: float, growth: float, decay: float, max_sigma: float,
                 max_tries: int, generator: torch.Generator) -> None:
        self.inner = inner
        self.returns, self.randomized, self.device = inner.returns, inner.randomized, inner.device
        self.remote = bool(getattr(inner, "remote", False))
        self.max_batch = getattr(inner, "max_batch", None)
        self.sigma0 = self.sigma = sigma
        self.growth, self.decay, self.max_sigma, self.max_tries = growth, decay, max_sigma, max_tries
        self.generator = generator
        self.rejected = self.sent = self.resampled = 0
        self.first_rejection: int | None = None  # images sent up to and including the first rejected request

    def forward(self, x: Tensor) -> Tensor:
        cand = x
        for _ in range(self.max_tries + 1):
            self.sent += int(x.shape[0])
            try:
                out = self.inner.forward(cand)
            except QueryRejected as exc:
                if exc.banned:
                    raise
                self.rejected += 1
                if self.first_rejection is None:
                    self.first_rejection = self.sent
                self.sigma = min(self.max_sigma, self.sigma * self.growth) if cand is not x else self.sigma
                u = torch.rand(x.shape, generator=self.generator, dtype=x.dtype) * 2 - 1
                cand = (x + self.sigma * u.to(x.device)).clamp(0.0, 1.0)
                self.resampled += 1
                continue
            if cand is not x:
                self.sigma = max(self.sigma0, self.sigma * self.decay)
            return out
        raise QueryRejected(f"OARS: {self.max_tries} re-drawn queries were all rejected (sigma {self.sigma:.3g})")


@dataclass
class OARSResult:
    """An adapted attack's outcome: ``result`` (None when it was stopped by rejections it could not get
    past, or a ban), rejected requests, images sent (charged by a server that charges rejected queries),
    the final proposal scale and why it stopped (``""`` when it finished)."""

    result: AttackResult | None
    rejected: int
    sent: int
    sigma: float
    stopped: str = ""
    first_rejection: int | None = None


class OARS:
    """Wrap any registered score or decision attack in OARS's adaptive rejection sampling.

    Args:
        attack: the attack to adapt (its hyperparameters are untouched).
        sigma: starting scale of the perturbation drawn after a rejection ([0, 1] pixel units).
        growth, decay: the scale's factor after a rejection / after an accepted re-drawn query.
        max_sigma: the scale's cap; max_tries: re-draws of one rejected batch before giving up.
        seed: of the re-draws.
    """

    def __init__(self, attack: Attack, *, sigma: float = 0.02, growth: float = 1.5, decay: float = 0.95,
                 max_sigma: float = 0.3, max_tries: int = 20, seed: int | None = 0) -> None:
        if attack.access == "white":
            raise InputError(f"OARS adapts query attacks; {attack.name!r} is a white-box attack")
        if not 0 < sigma <= max_sigma <= 1:
            raise InputError(f"need 0 < sigma <= max_sigma <= 1, got sigma={sigma}, max_sigma={max_sigma}")
        if growth < 1 or not 0 < decay <= 1 or max_tries < 1:
            raise InputError(f"need growth >= 1, 0 < decay <= 1, max_tries >= 1; got {growth}, {decay}, {max_tries}")
        self.attack, self.sigma, self.growth, self.decay = attack, sigma, growth, decay
        self.max_sigma, self.max_tries, self.seed = max_sigma, max_tries, seed

    def get_params(self) -> dict[str, Any]:
        return {"attack": self.attack.name, "sigma": self.sigma, "growth": self.growth, "decay": self.decay,
                "max_sigma": self.max_sigma, "max_tries": self.max_tries, "seed": self.seed}

    def run(self, model: BlackBox, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> OARSResult:
        """Run the wrapped attack on ``model`` through the adaptive oracle. ``x`` ``(N, C, H, W)``, ``y`` ``(N,)``."""
        backend = AdaptiveBackend(model.backend, sigma=self.sigma, growth=self.growth, decay=self.decay,
                                  max_sigma=self.max_sigma, max_tries=self.max_tries,
                                  generator=make_generator(self.seed))
        view = model.with_backend(backend)
        try:
            res: AttackResult | None = self.attack.run(view, x, y, target=target)
            stopped = ""
        except QueryRejected as exc:
            res, stopped = None, ("banned" if exc.banned else "rejected")
        return OARSResult(res, backend.rejected, backend.sent, backend.sigma, stopped, backend.first_rejection)


class RoundRobinBackend:
    """Send request ``i`` through ``backends[i mod k]`` (one attack over ``k`` API keys)."""

    def __init__(self, backends: list[Any]) -> None:
        if not backends:
            raise InputError("a Sybil split needs at least one backend")
        first = backends[0]
        self.backends = backends
        self.returns, self.randomized, self.device = first.returns, first.randomized, first.device
        self.remote = bool(getattr(first, "remote", False))
        self.max_batch = min(int(getattr(b, "max_batch", 0) or 1 << 30) for b in backends)
        self.turn = 0

    def forward(self, x: Tensor) -> Tensor:
        b = self.backends[self.turn % len(self.backends)]
        self.turn += 1
        out: Tensor = b.forward(x)
        return out


def sybil_blackbox(accounts: list[BlackBox]) -> BlackBox:
    """A view of ``accounts[0]`` whose requests rotate over the accounts' backends (each its own key on
    the server, with its own budget and detector history in ``"account"`` scope); counted on ``accounts[0]``."""
    return accounts[0].with_backend(RoundRobinBackend([a.backend for a in accounts]))


__all__ = ["OARS", "AdaptiveBackend", "OARSResult", "RoundRobinBackend", "sybil_blackbox"]
