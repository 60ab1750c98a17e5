"""NES (Ilyas, Engstrom, Athalye & Lin, ICML 2018; arXiv 1804.08598): projected gradient ascent on
the cross-entropy with a zeroth-order gradient estimate from ``q`` antithetic Gaussian pairs.

Reference loop: ash-aldujaili/blackbox-adv-examples-signhunter ``src/attacks/blackbox/nes_attack.py``
(commit 9279730) and MadryLab/blackbox-bandits ``src/main.py --nes`` (e50323c), re-implemented:

    g = sum_{i<q} (L(x + eta u_i) - L(x - eta u_i)) / (4 eta) * u_i,   u_i ~ N(0, I) / sqrt(d)
    x <- Proj_{eps, [0,1]}(x + lr sign(g))   (linf)   |   x + lr g / ||g||   (l2)

Objective: maximise ``L = CE(f(x), y)`` (untargeted) or ``-CE(f(x), target)`` (targeted).
Queries: ``2q`` per iteration for each still-unbroken image; the early-stop check after each step
is free in the reference and made here through ``BlackBox.audit`` (``audit_queries``), or charged
with ``charge_checks=True``. The probes ``x +- eta u`` are clipped to [0, 1] (the oracle accepts
only valid images; the reference queries them unclipped).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from ..errors import InputError
from ._score import Ledger, ScoreAttack, idx_of, project_box
from .base import register_attack


@register_attack
class NES(ScoreAttack):
    """NES gradient-estimation attack (linf, l2; untargeted and targeted).

    Args:
        norm: ``"linf"`` or ``"l2"``.
        eps: ball radius in [0, 1] pixel scale; default 0.3 (linf, MNIST config) / 3.0 (l2).
        max_queries: per-image budget (10,000 in the references).
        q: antithetic pairs per gradient estimate (MNIST config: 10).
        fd_eta: finite-difference step eta (MNIST config: 0.1).
        lr: image step; ``None`` = 0.1 (linf, MNIST config) or ``eps / 2`` (l2, ratio of the CIFAR
            config lr 64 / eps 127).
        charge_checks: charge the per-step success check (1 query) instead of auditing it.
        criterion, k, seed: see :class:`~bbdefense.attacks.square.Square`.

    Shape: ``x`` ``(N, C, H, W)``, ``y`` ``(N,)`` -> :class:`AttackResult`.
    """

    name = "nes"
    default_eps: ClassVar[dict[str, float]] = {"linf": 0.3, "l2": 3.0}

    q: int = 10
    fd_eta: float = 0.1
    lr: float | None = None
    charge_checks: bool = False

    def _check_params(self) -> None:
        if not isinstance(self.q, int) or self.q < 1:
            raise InputError(f"nes: q must be an int >= 1, got {self.q!r}")
        if not self.fd_eta > 0:
            raise InputError(f"nes: fd_eta must be > 0, got {self.fd_eta!r}")
        if self.lr is not None and not self.lr > 0:
            raise InputError(f"nes: lr must be > 0, got {self.lr!r}")

    def _attack(self, led: Ledger) -> Tensor:
        x = led.x
        eps = float(self.eps) if self.eps is not None else (0.3 if self.norm == "linf" else 3.0)
        lr = self.lr if self.lr is not None else (0.1 if self.norm == "linf" else eps / 2)
        x_adv = x.clone()
        d = x[0].numel()
        extra = 1 if self.charge_checks else 0
        first = idx_of(led.can(extra))
        if len(first):
            led.check(x_adv[first], first)  # the reference's initial early-stop check
        while True:
            act = idx_of(led.can(2 * self.q + extra))
            if len(act) == 0:
                break
            xa = x_adv[act]
            na = len(act)
            u = torch.randn((self.q, na, *x.shape[1:]), generator=led.g, device=x.device) / math.sqrt(d)
            probes = torch.cat([(xa + self.fd_eta * u).clamp(0, 1), (xa - self.fd_eta * u).clamp(0, 1)]).flatten(0, 1)
            owner = act.repeat(2 * self.q)
            lp = led.query(probes, owner)
            loss = led.loss_up(lp, owner).view(2, self.q, na)
            coef = (loss[0] - loss[1]) / (4 * self.fd_eta)
            grad = (coef.view(self.q, na, 1, 1, 1) * u).sum(dim=0)
            if self.norm == "linf":
                step = lr * grad.sign()
            else:
                step = lr * grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            x_adv[act] = project_box(xa + step, x[act], eps, self.norm)
            led.check(x_adv[act], act)
        return x_adv


__all__ = ["NES"]
