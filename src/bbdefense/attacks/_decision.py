"""Shared machinery of the decision-based (label-only) attacks: per-image query accounting and
the minimum-norm result convention.

Every decision attack asks one question of the model, "is this image adversarial?", through
:class:`LabelOracle`, which forwards a batch of candidate images (several may belong to the
same original image), charges each row to the image that owns it, and refuses to charge any
image beyond its per-image budget (a bug in an attack then fails loudly instead of quietly
overspending).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..errors import InputError, QueryBudgetExceeded
from ..models import BlackBox
from .base import Attack, Criterion, Outcome, hyperparameters, is_adversarial, lp_norm
from .criteria import CRITERIA, confirm
from .criteria import check as check_criterion

# Default rows per oracle call: a resource knob only (results do not depend on it). Small
# batches keep a CNN's activations in cache: on a 2-core CPU a SmallCNN answers 32-image batches
# about 2x faster per image than 1000-image ones.
CHUNK = 32


class LabelOracle:
    """Label-only membership test with per-image query accounting.

    Args:
        model: the black box (any output mode; only the top-1 label is used).
        y: ``(N,)`` true labels; ``target``: ``(N,)`` target labels or None (untargeted).
        max_queries: per-image budget.
        batch_size: rows per model call (a resource knob; results do not depend on it).

    ``queries`` is ``(N,)`` int64: what each image has been charged so far.
    """

    def __init__(self, model: BlackBox, y: Tensor, target: Tensor | None, max_queries: int,
                 batch_size: int = CHUNK) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.batch_size = batch_size
        self.model = model
        self.y = y
        self.target = target
        self.max_queries = int(max_queries)
        self.queries = torch.zeros(len(y), dtype=torch.long, device=y.device)

    def remaining(self) -> Tensor:
        """``(N,)`` queries each image may still spend."""
        return self.max_queries - self.queries

    def is_adv(self, xq: Tensor, owner: Tensor) -> Tensor:
        """Query ``xq`` ``(M, C, H, W)`` (clipped to [0, 1]); row ``m`` is charged to image ``owner[m]``.

        Returns ``(M,)`` bool: the row is adversarial for its owner (label != y, or == target).
        Raises :class:`QueryBudgetExceeded` if an owner would exceed its budget (an attack bug).
        """
        if len(owner) == 0:
            return torch.zeros(0, dtype=torch.bool, device=xq.device)
        need = torch.bincount(owner, minlength=len(self.y))
        over = need > self.remaining()
        if bool(over.any()):
            i = int(over.nonzero()[0])
            raise QueryBudgetExceeded(f"image {i} would exceed its budget of {self.max_queries} queries "
                                      f"({int(self.queries[i])} used, {int(need[i])} more asked)")
        xq = xq.clamp(0.0, 1.0)
        bs = self.batch_size
        preds = [self.model.predict_label(xq[i:i + bs]) for i in range(0, len(xq), bs)]
        pred = torch.cat(preds).to(owner.device)
        self.queries += need
        return is_adversarial(pred, self.y[owner], None if self.target is None else self.target[owner])


def check_common(name: str, norm: str, norms: tuple[str, ...], eps: float | None, max_queries: int,
                 criterion: str = "single", criteria: tuple[str, ...] = CRITERIA, k: int = 9) -> None:
    """Validate the hyperparameters every decision attack shares (``criteria``: those this attack accepts)."""
    check_criterion(name, criterion, k, criteria)
    if norm not in norms:
        raise InputError(f"{name}: norm must be one of {', '.join(norms)}, got {norm!r}")
    if eps is not None and not eps > 0:
        raise InputError(f"{name}: eps must be > 0 or None, got {eps}")
    if not isinstance(max_queries, int) or max_queries < 1:
        raise InputError(f"{name}: max_queries must be an int >= 1, got {max_queries!r}")


@hyperparameters
class DecisionAttack(Attack):
    """Base of the decision-based (label-only) attacks: the randomized-model criteria (``fast_exp``
    included), the hyperparameters they share (declared once here, listed last) and their checks.
    Each attack declares ``norm``, ``eps`` and ``max_queries`` with its reference's defaults."""

    access = "label"
    criteria = CRITERIA
    trailing = ("batch_size", "criterion", "k", "seed")
    if TYPE_CHECKING:  # declared by each attack (its own default and place)
        norm: str
        eps: float | None
        max_queries: int
    batch_size: int = CHUNK
    criterion: Criterion = "single"
    k: int = 9
    seed: int | None = 0

    def _check(self, model: BlackBox, target: Tensor | None) -> None:
        check_common(self.name, self.norm, self.norms, self.eps, self.max_queries, self.criterion, self.criteria,
                     self.k)


def min_norm_outcome(norm: str, eps: float | None, x: Tensor, x_best: Tensor, found: Tensor, queries: Tensor, *,
                     confirmed: Tensor | None = None, **extra: Any) -> Outcome:
    """Package a minimum-norm attack's outcome for the template (which applies the criterion).

    ``x_best`` ``(N, ...)`` is the closest adversarial found for each image where ``found`` is True.
    ``extra["min_norm"]`` is that distance (inf where nothing was found). The claimed ``success`` is
    ``found & (min_norm <= eps)`` (just ``found`` without eps). ``x_adv`` is ``x_best`` where it
    succeeded and ``x`` elsewhere, so ``x_adv`` always lies in the eps-ball.
    """
    reached = torch.where(found, lp_norm(x_best - x, norm), torch.full_like(found, float("inf"), dtype=x.dtype))
    success = found.clone() if eps is None else found & (reached <= eps)
    x_adv = torch.where(success.view(-1, *([1] * (x.dim() - 1))), x_best, x)
    return Outcome(x_adv=x_adv, success=success, queries=queries.cpu().long(), confirmed=confirmed,
                   extra={"min_norm": reached.float(), **extra})


__all__ = ["CHUNK", "CRITERIA", "DecisionAttack", "LabelOracle", "check_common", "confirm", "min_norm_outcome"]
