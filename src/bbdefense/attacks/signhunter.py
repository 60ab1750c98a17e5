"""SignHunter (Al-Dujaili & O'Reilly, ICLR 2020; arXiv 1902.06894): estimate the *sign* of the
gradient by flipping ever smaller chunks of a sign vector, keeping a flip when the directional
derivative estimate improves; the iterate is ``Proj(x0 + eps * s)``.

Reference: ash-aldujaili/blackbox-adv-examples-signhunter ``src/attacks/blackbox/sign_attack.py``
(commit 9279730, with ``black_box_attack.py``), re-implemented:

    at a (re)start: s = +1^d, best = (L(x0 + eps s) - L(x0)) / eps, h = i = 0
    each step: chunk = ceil(d / 2^h); flip s[i chunk:(i+1) chunk]
               est = (L(x0 + eps s) - L(x0)) / eps            # 1 query
               undo the flip where est < best; best = max(best, est); x = Proj(x0 + eps s)
               i += 1; if i == 2^h or the chunk reached d: h += 1, i = 0
               if h == ceil(log2 d) + 1: restart from x0 <- x

Objective: maximise ``CE(f(x), y)`` (untargeted) or ``-CE(f(x), target)`` (targeted).
Queries: 1 per step; at each (re)start 2 more (``L(x0)`` and ``L(x0 + eps 1)``). The reference
charges 3 more at the first step because it counts ``L(x0)`` twice there, and re-evaluates
``L(x0)`` (uncounted) at every step; we evaluate it once per restart and charge every forward.
The point queried is ``Proj_{eps,[0,1]}(x0 + eps s)`` (the reference queries it unprojected), so
the success of the kept sign vector is known from a charged query: no extra check is made.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from ._score import Ledger, ScoreAttack, idx_of, project_box
from .base import register_attack


@register_attack
class SignHunter(ScoreAttack):
    """SignHunter (linf, l2; untargeted and targeted).

    Args:
        norm: ``"linf"`` or ``"l2"`` (l2 step ``eps * s / sqrt(d)``).
        eps: radius; default 0.3 (linf, MNIST config) / 3.0 (l2, MNIST config).
        max_queries: per-image budget (10,000 in the reference).
        criterion, k, seed: see :class:`~bbdefense.attacks.square.Square` (SignHunter is
            deterministic; ``seed`` is kept for the common interface).

    Shape: ``x`` ``(N, C, H, W)``, ``y`` ``(N,)`` -> :class:`AttackResult`.
    """

    name = "signhunter"
    default_eps: ClassVar[dict[str, float]] = {"linf": 0.3, "l2": 3.0}

    def _attack(self, led: Ledger) -> Tensor:
        x = led.x
        n = x.shape[0]
        d = x[0].numel()
        eps = float(self.eps) if self.eps is not None else (0.3 if self.norm == "linf" else 3.0)
        scale = eps if self.norm == "linf" else eps / math.sqrt(d)
        h_max = math.ceil(math.log2(d)) + 1 if d > 1 else 1
        x_adv = x.clone()
        x0 = x.clone()
        sgn = torch.ones(n, d, device=x.device)
        best = torch.zeros(n, device=x.device)
        l0 = torch.zeros(n, device=x.device)
        h = i = 0
        started = False

        def point(idx: Tensor) -> Tensor:
            return project_box(x0[idx] + scale * sgn[idx].view(-1, *x.shape[1:]), x[idx], eps, self.norm)

        while True:
            restart = not started or (h == 0 and i == 0)
            act = idx_of(led.can(3 if restart else 1))
            if len(act) == 0:
                break
            if restart:
                if started:
                    x0[act] = x_adv[act]
                sgn[act] = 1.0
                probes = torch.cat([x0[act], point(act)])
                owner = act.repeat(2)
                lp = led.query(probes, owner)
                loss = led.loss_up(lp, owner).view(2, len(act))
                l0[act] = loss[0]
                best[act] = (loss[1] - loss[0]) / eps
                x_adv[act] = probes[len(act):]
                led.mark(lp[len(act):], act, probes[len(act):])
                act = act[~led.done[act]]
                started = True
                if len(act) == 0:
                    continue
            chunk = math.ceil(d / 2 ** h)
            s0, s1 = i * chunk, min(d, (i + 1) * chunk)
            sgn[act, s0:s1] *= -1
            xp = point(act)
            lp = led.query(xp, act)
            est = (led.loss_up(lp, act) - l0[act]) / eps
            worse = est < best[act]
            undo = act[worse]
            sgn[undo, s0:s1] *= -1
            best[act] = torch.maximum(best[act], est)
            keep = act[~worse]
            x_adv[keep] = xp[~worse]
            led.mark(lp[~worse], keep, xp[~worse])
            i += 1
            if i == 2 ** h or s1 == d:
                h, i = h + 1, 0
                if h == h_max:
                    h = 0
        return x_adv


__all__ = ["SignHunter"]
