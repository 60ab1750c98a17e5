"""Shared machinery of the decision-based (label-only) attacks: per-image query accounting and
the minimum-norm result convention.

Every decision attack asks one question of the model, "is this image adversarial?", through
:class:`LabelOracle`, which forwards a batch of candidate images (several may belong to the
same original image), charges each row to the image that owns it, and refuses to charge any
image beyond its per-image budget (a bug in an attack then fails loudly instead of quietly
overspending).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import InputError, QueryBudgetExceeded
from ..models import BlackBox
from .base import AttackResult, is_adversarial, lp_norm

# Default rows per oracle call: a resource knob only (results do not depend on it). Small
# batches keep a CNN's activations in cache: on a 2-core CPU a SmallCNN answers 32-image batches
# about 2x faster per image than 1000-image ones.
CHUNK = 32
CRITERIA = ("single", "majority", "fooled_once")


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
                 criterion: str = "single", criteria: tuple[str, ...] = CRITERIA) -> None:
    """Validate the hyperparameters every decision attack shares (``criteria``: those this attack accepts)."""
    if criterion not in criteria:
        raise InputError(f"{name}: criterion must be one of {', '.join(criteria)}, got {criterion!r}")
    if norm not in norms:
        raise InputError(f"{name}: norm must be one of {', '.join(norms)}, got {norm!r}")
    if eps is not None and not eps > 0:
        raise InputError(f"{name}: eps must be > 0 or None, got {eps}")
    if not isinstance(max_queries, int) or max_queries < 1:
        raise InputError(f"{name}: max_queries must be an int >= 1, got {max_queries!r}")


def confirm(model: BlackBox, x: Tensor, y: Tensor, target: Tensor | None, k: int) -> Tensor:
    """``(M,)`` bool: more than half of ``k`` uncharged re-queries (:meth:`BlackBox.audit`) of ``x`` ``(M, ...)``
    are adversarial (RFD's majority of 9; the in-attack re-check of ``criterion="fast_exp"``)."""
    if not isinstance(k, int) or k < 1:
        raise InputError(f"k must be an int >= 1, got {k!r}")
    votes = torch.zeros(len(x), device=x.device)
    for _ in range(k):
        out = model.audit(x)
        pred = out if model.output == "label" else out.argmax(1)
        votes += is_adversarial(pred.to(y.device), y, target).float().to(x.device)
    return votes > k / 2


def verify(model: BlackBox, x_adv: Tensor, y: Tensor, target: Tensor | None, success: Tensor, criterion: str,
           k: int, confirmed: Tensor | None = None) -> tuple[Tensor, int]:
    """Apply the success criterion on a randomized model (reference/algorithms.md pitfall 8).

    ``single`` and ``fooled_once`` keep the attack's own verdict (the query that found the point
    was adversarial once); ``majority`` re-queries each successful ``x_adv`` ``k`` times through
    :meth:`BlackBox.audit` (not charged) and keeps it only if more than half are adversarial (RFD's
    majority of 9). ``fast_exp`` (attacks that re-check during the run) keeps the successes already
    ``confirmed`` there and applies ``majority`` to the others (on a deterministic model it is ``single``). Returns the new success mask and the audit
    queries spent.
    """
    if criterion not in (*CRITERIA, "fast_exp"):
        raise InputError(f"criterion must be one of {', '.join(CRITERIA)}, fast_exp, got {criterion!r}")
    if criterion == "fast_exp" and not bool(model.randomized):
        return success, 0  # as for the score attacks: on a deterministic model fast_exp is single
    todo = success if confirmed is None or criterion != "fast_exp" else success & ~confirmed.to(success.device)
    if criterion not in ("majority", "fast_exp") or not bool(todo.any()):
        return success, 0
    if not isinstance(k, int) or k < 1:
        raise InputError(f"k must be an int >= 1 for criterion {criterion!r}, got {k!r}")
    idx = todo.nonzero().squeeze(1)
    keep = success.clone()
    keep[idx] = confirm(model, x_adv[idx], y[idx], None if target is None else target[idx], k).to(keep.device)
    return keep, k * len(idx)


def min_norm_result(name: str, params: dict[str, Any], norm: str, eps: float | None, x: Tensor, x_best: Tensor,
                    found: Tensor, queries: Tensor, *, model: BlackBox | None = None, y: Tensor | None = None,
                    target: Tensor | None = None, criterion: str = "single", k: int = 9,
                    confirmed: Tensor | None = None, audit_queries: int = 0, **extra: Any) -> AttackResult:
    """Package a minimum-norm attack's outcome.

    ``x_best`` ``(N, ...)`` is the closest adversarial found for each image where ``found`` is True.
    ``extra["min_norm"]`` is that distance (inf where nothing was found). ``success`` is
    ``found & (min_norm <= eps)`` (just ``found`` without eps). ``x_adv`` is ``x_best`` where it
    succeeded and ``x`` elsewhere, so ``x_adv`` always lies in the eps-ball; ``norms`` is
    ``||x_adv - x||``.
    """
    reached = torch.where(found, lp_norm(x_best - x, norm), torch.full_like(found, float("inf"), dtype=x.dtype))
    success = found.clone() if eps is None else found & (reached <= eps)
    x_adv = torch.where(success.view(-1, *([1] * (x.dim() - 1))), x_best, x)
    audit = audit_queries
    if model is not None and y is not None:
        success, spent = verify(model, x_adv, y, target, success, criterion, k, confirmed)
        audit += spent
    crit = f"{criterion}@{k}" if criterion in ("majority", "fast_exp") else criterion
    return AttackResult(x_adv=x_adv, success=success, queries=queries.cpu().long(),
                        norms=lp_norm(x_adv - x, norm).float(), attack=name, params=params, norm=norm, eps=eps,
                        audit_queries=audit, criterion=crit, extra={"min_norm": reached.float(), **extra})


__all__ = ["CHUNK", "CRITERIA", "LabelOracle", "check_common", "confirm", "min_norm_result", "verify"]
