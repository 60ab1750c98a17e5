"""Success criteria on randomized models, defined once (reference/algorithms.md pitfall 8).

On a randomized model (``model.randomized``) one query's answer is a sample: an attack that stops on
its own noisy signal may stop on a false alarm. ``criterion`` says how the success of an image is
decided; the attack template (:meth:`bbdefense.attacks.Attack.run`) applies it to the returned
``x_adv`` through :meth:`BlackBox.audit` (verification queries, counted as ``audit_queries``,
never charged to the image):

* ``"fooled_once"``: the attack's own verdict (the query that found the point said "fooled" once);
* ``"single"``: one audit re-query of each returned ``x_adv`` decides;
* ``"majority"`` (recorded ``majority@k``): more than half of ``k`` audit re-queries of each ``x_adv``;
* ``"fast_exp"`` (recorded ``fast_exp@k``; RFD reference ``--stop_criterion fast_exp``,
  mail-research/randomized_defenses @3432cb4): **during** the run, whenever the attack would stop on
  an image it re-checks the point with ``k`` audit re-queries (:func:`confirm`) and, on a false
  alarm, keeps attacking that image; at the end the confirmed successes stand and any other claimed
  success gets the ``majority`` test.

On a deterministic model every criterion is the attack's own verdict and no re-query is made.
Attacks declare the criteria they support in the class variable ``criteria`` (empty: none, e.g.
white-box attacks, whose success is the white box's own answer).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import InputError
from ..models import BlackBox

CRITERIA: tuple[str, ...] = ("single", "majority", "fooled_once", "fast_exp")

#: ``fooled(out, y, target) -> (M,) bool`` from a model's revealed output ``out`` ``(M, K)`` or ``(M,)``
Fooled = Callable[[Tensor, Tensor, Tensor | None], Tensor]


def top1_fooled(out: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
    """Top-1 success: ``argmax != y`` (untargeted) or ``argmax == target``; labels pass through."""
    pred = out if out.dim() == 1 else out.argmax(1)
    pred = pred.to(y.device)
    return pred.eq(target) if target is not None else pred.ne(y)


def check(name: str, criterion: str, k: int, allowed: tuple[str, ...]) -> None:
    """Raise :class:`InputError` for a criterion ``name`` does not support or a bad ``k``."""
    if criterion not in allowed:
        raise InputError(f"{name}: criterion must be one of {', '.join(allowed)}, got {criterion!r}")
    if not isinstance(k, int) or k < 1:
        raise InputError(f"{name}: k (re-queries for criterion='majority') must be >= 1, got {k!r}")


def label(criterion: str, k: int) -> str:
    """How a result records its criterion: ``majority@k`` and ``fast_exp@k`` name their ``k``."""
    return f"{criterion}@{k}" if criterion in ("majority", "fast_exp") else criterion


def votes(model: BlackBox, x: Tensor, y: Tensor, target: Tensor | None, reps: int,
          fooled: Fooled = top1_fooled) -> Tensor:
    """``(M,)`` int64: how many of ``reps`` audit re-queries of ``x`` ``(M, C, H, W)`` say fooled."""
    v = torch.zeros(len(x), dtype=torch.long, device=y.device)
    for _ in range(reps):
        v += fooled(model.audit(x), y, target).long().to(v.device)
    return v


def confirm(model: BlackBox, x: Tensor, y: Tensor, target: Tensor | None, k: int,
            fooled: Fooled = top1_fooled) -> Tensor:
    """``(M,)`` bool: more than half of ``k`` audit re-queries of ``x`` are adversarial (RFD's majority
    of 9; the in-attack re-check of ``fast_exp``)."""
    if not isinstance(k, int) or k < 1:
        raise InputError(f"k must be an int >= 1, got {k!r}")
    return votes(model, x, y, target, k, fooled) * 2 > k


def decide(model: BlackBox, criterion: str, k: int, x_adv: Tensor, y: Tensor, target: Tensor | None,
           claimed: Tensor, confirmed: Tensor | None = None, fooled: Fooled = top1_fooled) -> Tensor:
    """Final success ``(N,)`` bool of the returned ``x_adv`` under ``criterion`` (see the module docstring).

    ``claimed``: the attack's own verdict; ``confirmed``: the successes a ``fast_exp`` attack already
    confirmed during the run (None: none).
    """
    if not bool(model.randomized) or criterion == "fooled_once" or len(x_adv) == 0:
        return claimed
    if criterion == "fast_exp":
        todo = claimed if confirmed is None else claimed & ~confirmed.to(claimed.device)
        if not bool(todo.any()):
            return claimed
        idx = todo.nonzero().squeeze(1)
        out = claimed.clone()
        out[idx] = confirm(model, x_adv[idx], y[idx], None if target is None else target[idx], k,
                           fooled).to(out.device)
        return out
    if criterion not in ("single", "majority"):
        raise InputError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
    reps = k if criterion == "majority" else 1
    v = votes(model, x_adv, y, target, reps, fooled)
    return (v * 2 > reps if criterion == "majority" else v > 0).to(claimed.device)


__all__ = ["CRITERIA", "Fooled", "check", "confirm", "decide", "label", "top1_fooled", "votes"]
