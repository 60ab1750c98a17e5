"""Transfer attack: craft on a white-box surrogate, evaluate on the black-box target
(Papernot, McDaniel & Goodfellow 2016, arXiv 1605.07277; the steal-then-transfer adaptive attack
of UniG section 4.4 uses a KnockoffNets surrogate, see :mod:`bbdefense.attacks.knockoff`).

Objective: ``x_adv = A(surrogate, x, y)`` for a white-box attack ``A`` (``pgd`` or ``apgd``)
inside the eps-ball, then one label query of the target per image to see whether it transfers.

Queries: the target is charged **only the verification query** (1 per image); the surrogate's
forward passes are counted on the surrogate's own white box and reported in
``extra["surrogate_queries"]``. Works on any target output mode (only labels are needed).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..models import BlackBox, WhiteBox
from .base import ATTACKS, Attack, Outcome, is_adversarial, register_attack


@register_attack
class Transfer(Attack):
    """Transfer adversarial examples from a surrogate to the target.

    Args:
        surrogate: a :class:`~bbdefense.models.WhiteBox` or an ``nn.Module`` (wrapped with the
            target's input shape); required at run time.
        attack: ``"pgd"`` or ``"apgd"`` run on the surrogate; ``attack_params``: its hyperparameters.
        criterion, k: success on a randomized target (:mod:`bbdefense.attacks.criteria`: ``single``
            re-queries each point once, ``majority`` ``k`` times, through uncharged audits;
            ``fooled_once`` keeps the charged verification query), recorded in the result.
        seed: passed to the inner attack unless ``attack_params`` sets one.

    Shape: ``x`` ``(N, C, H, W)`` -> ``AttackResult`` (``queries`` = 1 per image on the target).

    Example:
        >>> res = Transfer(surrogate=stolen_net, attack_params={"eps": 0.3}).run(target_bb, x, y)  # doctest: +SKIP
    """

    name = "transfer"
    access = "label"
    requires = ("surrogate",)
    criteria = ("single", "majority", "fooled_once")  # no early stop, hence no fast_exp

    surrogate: WhiteBox | nn.Module | None = None
    attack: Literal["pgd", "apgd"] = "pgd"
    attack_params: dict[str, Any] | None = None
    criterion: Literal["single", "majority", "fooled_once"] = "single"
    k: int = 9
    seed: int | None = 0

    def _surrogate(self, model: BlackBox) -> WhiteBox:
        if isinstance(self.surrogate, WhiteBox):
            return self.surrogate
        if isinstance(self.surrogate, nn.Module):
            return WhiteBox(self.surrogate, num_classes=model.num_classes, input_shape=model.input_shape,
                            name="surrogate")
        raise InputError("transfer: pass surrogate= (a WhiteBox or an nn.Module, e.g. a KnockoffNets stolen "
                         f"model); got {type(self.surrogate).__name__}")

    def _check(self, model: BlackBox, target: Tensor | None) -> None:
        if self.attack not in ("pgd", "apgd"):
            raise InputError(f"transfer: attack must be 'pgd' or 'apgd', got {self.attack!r}")

    def _run(self, model: BlackBox, x: Tensor, y: Tensor, target: Tensor | None) -> Outcome:
        sur = self._surrogate(model)
        if sur.num_classes != model.num_classes:
            raise InputError(f"transfer: surrogate has {sur.num_classes} classes, the target {model.num_classes}")
        inner = ATTACKS[self.attack](**{"seed": self.seed, **(self.attack_params or {})})
        s0 = sur.stats.queries
        crafted = inner.run(sur, x, y, target=target)
        pred = model.predict_label(crafted.x_adv)
        success = is_adversarial(pred.to(y.device), y, target)
        return Outcome(x_adv=crafted.x_adv, success=success, queries=torch.ones(len(x), dtype=torch.long),
                       norm=crafted.norm, eps=crafted.eps,
                       extra={"surrogate_queries": sur.stats.queries - s0, "surrogate_success": crafted.success,
                              "inner": inner.get_params()})
