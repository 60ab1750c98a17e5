"""Auto Conjugate Gradient attack (Yamamura, Sato, Tateiwa, Hata, Mitsutake, Oe, Iwai & Ito,
ICML 2022, "Diversified adversarial attacks based on conjugate gradient method", arXiv 2206.09628).

Objective: maximise the CW margin loss ``max_{i != y} z_i - z_y`` over the linf ball and [0, 1].
ACG keeps AutoPGD's parameter-free step-size schedule (``eta_0 = 2 eps``, halving and reset to
the best point at the same checkpoints, ``rho = 0.75``) but moves along a **conjugate direction**
``s_k = grad_k + beta_k s_{k-1}`` with the Hestenes-Stiefel ``beta_k`` (computed on ``-grad``,
clamped at 0), ``x_{k+1} = P(x_k + eta_k sign(s_k))``, without momentum. At a step-size reset the
previous gradient and direction are restored together with the best point.

Reference: yamamura-k/ACG ``src/attacker/AUTOConjugate.py`` and ``src/utils/step_size.py``
(commit 3504bf9) and its ``autoconjugate.yaml`` defaults (100 iterations, HS beta with clamp,
momentum 1.0, CW loss, first run from the centre of the feasible box, restarts from random
points), re-implemented on the shared loop :func:`bbdefense.attacks.apgd.auto_loop`.
Difference: a NaN/inf beta (``s . y = 0``) is replaced by 0 (the reference leaves it NaN by
default, which then poisons the iterate).

DUCD (arXiv 2408.10647) uses ACG as its white-box attack. Queries: as AutoPGD, at most
``restarts * (steps + 1)`` per image.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .apgd import APGD, random_start
from .base import register_attack


@register_attack
class ACG(APGD):
    """Auto Conjugate Gradient attack (linf) on a :class:`~bbdefense.models.WhiteBox`.

    Args:
        eps: linf radius; steps: iterations per restart (100); loss: ``"cw"`` (reference), ``"ce"`` or ``"dlr"``.
        restarts: the first run starts at the centre of the feasible box, later ones at random points.
        rho: oscillation threshold (0.75); ``momentum``: 1.0 (no momentum, reference).

    Shape: ``x`` ``(N, C, H, W)`` -> ``AttackResult``.
    """

    name = "acg"
    access = "white"

    # APGD's hyperparameters, with the reference's ACG defaults where they differ
    loss: Literal["ce", "dlr", "cw"] = "cw"
    momentum: float = 1.0

    def _start(self, x: Tensor, g: torch.Generator, restart: int) -> Tensor:
        if restart == 0:  # centre of [max(x - eps, 0), min(x + eps, 1)]
            return 0.5 * ((x - self.eps).clamp(min=0) + (x + self.eps).clamp(max=1))
        return random_start(x, self.eps, self.norm, g)
