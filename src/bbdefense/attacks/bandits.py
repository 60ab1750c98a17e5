"""Bandits-TD (Ilyas, Engstrom & Madry, ICLR 2019; arXiv 1807.07978): gradient estimation with a
time-dependent prior (a bandit over the gradient, updated online) and a data-dependent (tiling)
prior: the prior lives on a coarse ``tile_size x tile_size`` grid, upsampled (nearest) to the image.

Reference: MadryLab/blackbox-bandits ``src/main.py`` (commit e50323c), re-implemented:

    u = exploration * randn_like(v) / sqrt(dim(v))
    l1 = L(x + eta up(v+u)/||up(v+u)||),  l2 = L(x + eta up(v-u)/||up(v-u)||)     # 2 queries
    v <- eg_step(v, (l1 - l2)/(eta exploration) u, online_lr)   (linf; v in [-1, 1])
         v + online_lr (l1 - l2)/(eta exploration) u              (l2)
    x <- Proj_{eps,[0,1]}(x + image_lr sign(up(v)))   (linf)  |  x + image_lr up(v)/||up(v)||  (l2)

Objective: maximise ``CE(f(x), y)`` (untargeted) or ``-CE(f(x), target)`` (targeted).
Queries: 2 per iteration per still-unbroken image; the success check after each step is free in
the reference and made here through ``BlackBox.audit`` (or charged with ``charge_checks=True``).
Probes are clipped to [0, 1] (the oracle accepts only valid images).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from ._score import Ledger, ScoreAttack, idx_of, project_box
from .base import register_attack

_DEFAULTS = {  # MadryLab configs linf.json / l2.json
    "linf": {"fd_eta": 0.1, "image_lr": 0.01, "online_lr": 100.0, "exploration": 1.0},
    "l2": {"fd_eta": 0.01, "image_lr": 0.5, "online_lr": 0.1, "exploration": 0.01},
}


def _norm(t: Tensor) -> Tensor:
    n = t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))
    return n + (n == 0).float() * 1e-8


def eg_step(v: Tensor, g: Tensor, lr: float) -> Tensor:
    """Exponentiated-gradient step on ``v`` in [-1, 1] (the reference's ``eg_step``,
    ``pos / (pos + neg)`` with ``pos = r e^{lr g}``, ``neg = (1 - r) e^{-lr g}``), computed in log space
    so that large ``lr * g`` cannot overflow to ``inf / inf``."""
    real = ((v + 1) / 2).clamp(0, 1)
    lpos = torch.log(real) + lr * g
    lneg = torch.log1p(-real) - lr * g
    return torch.exp(lpos - torch.logaddexp(lpos, lneg)) * 2 - 1


@register_attack
class Bandits(ScoreAttack):
    """Bandits-TD with the tiling prior (linf, l2; untargeted and targeted).

    Args:
        norm: ``"linf"`` or ``"l2"``.
        eps: ball radius (pixel scale); default 0.05 (linf) / 5.0 (l2) as the reference configs.
        max_queries: per-image budget (10,000 in the reference).
        tile_size: side of the prior grid (``None``: ``max(1, H // 4)``; the reference uses 50 for
            299-pixel ImageNet, the signhunter port 8 for 28-pixel MNIST... ``H // 4`` sits between).
        fd_eta, image_lr, online_lr, exploration: ``None`` takes the reference config of ``norm``
            (linf: 0.1, 0.01, 100, 1.0; l2: 0.01, 0.5, 0.1, 0.01).
        charge_checks: charge the per-step success check instead of auditing it.
        criterion, k, seed: see :class:`~bbdefense.attacks.square.Square`.

    Shape: ``x`` ``(N, C, H, W)``, ``y`` ``(N,)`` -> :class:`AttackResult`.
    """

    name = "bandits"
    default_eps: ClassVar[dict[str, float]] = {"linf": 0.05, "l2": 5.0}

    tile_size: int | None = None
    fd_eta: float | None = None
    image_lr: float | None = None
    online_lr: float | None = None
    exploration: float | None = None
    charge_checks: bool = False

    def _check_params(self) -> None:
        for name in ("fd_eta", "image_lr", "online_lr", "exploration"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise InputError(f"bandits: {name} must be > 0, got {v!r}")
        if self.tile_size is not None and (not isinstance(self.tile_size, int) or self.tile_size < 1):
            raise InputError(f"bandits: tile_size must be an int >= 1, got {self.tile_size!r}")

    def _attack(self, led: Ledger) -> Tensor:
        x = led.x
        n, c, h, w = x.shape
        cfg = dict(_DEFAULTS[self.norm])
        for key in cfg:
            if getattr(self, key) is not None:
                cfg[key] = float(getattr(self, key))
        eps = float(self.eps) if self.eps is not None else (0.05 if self.norm == "linf" else 5.0)
        tile = self.tile_size if self.tile_size is not None else max(1, h // 4)
        eta, ilr, olr, expl = cfg["fd_eta"], cfg["image_lr"], cfg["online_lr"], cfg["exploration"]
        prior = torch.zeros(n, c, tile, tile, device=x.device)
        dim = prior[0].numel()
        x_adv = x.clone()

        def up(t: Tensor) -> Tensor:
            return F.interpolate(t, size=(h, w), mode="nearest")

        extra = 1 if self.charge_checks else 0
        first = idx_of(led.can(extra))
        if len(first):
            led.check(x_adv[first], first)
        while True:
            act = idx_of(led.can(2 + extra))
            if len(act) == 0:
                break
            xa, v = x_adv[act], prior[act]
            u = expl * torch.randn(v.shape, generator=led.g, device=x.device) / dim ** 0.5
            q1, q2 = up(v + u), up(v - u)
            probes = torch.cat([(xa + eta * q1 / _norm(q1)).clamp(0, 1), (xa + eta * q2 / _norm(q2)).clamp(0, 1)])
            owner = act.repeat(2)
            loss = led.loss_up(led.query(probes, owner), owner).view(2, len(act))
            est = ((loss[0] - loss[1]) / (eta * expl)).view(-1, 1, 1, 1) * u
            v = eg_step(v, est, olr) if self.norm == "linf" else v + olr * est
            prior[act] = v
            g = up(v)
            step = ilr * g.sign() if self.norm == "linf" else ilr * g / _norm(g)
            x_adv[act] = project_box(xa + step, x[act], eps, self.norm)
            led.check(x_adv[act], act)
        return x_adv


__all__ = ["Bandits", "eg_step"]
