"""Shared machinery of the score-based attacks: hyperparameter checks, per-image query ledger,
losses from logits or probabilities, and the success criterion on randomized models.

Conventions (documented per attack in ``docs/attacks.md``):

* **Queries.** Every forward an attack makes through :meth:`BlackBox.query` is charged to the image
  it belongs to (:class:`Ledger`), so ``result.queries.sum()`` equals the oracle's own counter. A
  model may declare ``query_cost`` (the EOT wrapper charges ``M`` per image per call); the ledger
  charges that many. An image takes part in a step only if the step's full cost still fits in its
  ``max_queries``: no image ever exceeds its budget.
* **Free checks.** Where the reference checks success with an extra, uncounted forward (NES,
  Bandits), the check goes through :meth:`BlackBox.audit` and is reported as ``audit_queries``
  (``charge_checks=True`` charges it instead). Where the answer is already in a charged query
  (Square, SimBA, SignHunter), no extra forward is made.
* **Scores.** Losses are computed from log-probabilities: ``log_softmax(logits)`` or ``log(probs)``.
  The margin of log-probabilities equals the margin of logits, and cross-entropy is the same from
  either, so an attack gives the same trajectory on a logits or a probs oracle of one model.
* **Success on randomized models** (reference/algorithms.md pitfall 8, :mod:`bbdefense.attacks.criteria`):
  the attack stops on its own (noisy) signal; ``criterion`` then decides success (applied by the
  :meth:`Attack.run` template): ``"fooled_once"`` keeps that signal, ``"single"`` re-queries ``x_adv``
  once and ``"majority"`` ``k`` times through ``audit``. On a deterministic model no re-query is
  needed (all coincide).
* **``criterion="fast_exp"``** (RFD reference ``--stop_criterion fast_exp``, mail-research/randomized_defenses
  @3432cb4 ``attack/square_attack.py`` ``get_margin``): whenever one charged query (or a free check) says
  "fooled", ``x`` is re-queried ``k`` times through ``audit``; the image stops only if the majority is wrong.
  On a false alarm the attack **continues** on that image (its queries keep being charged as usual; the
  re-check votes are uncounted, as in the reference, and reported as ``audit_queries``; attacks with
  ``charge_checks=True`` charge them to the image instead, never past its budget). Final success = the
  confirmed stops (no end-of-run re-check). On a deterministic model it equals ``single``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from ..errors import InputError
from ..models import BlackBox
from ..utils import make_generator
from .base import Attack, Outcome, hyperparameters, margin_loss
from .criteria import CRITERIA, Fooled


def log_probs(scores: Tensor, output: str) -> Tensor:
    """Log-probabilities ``(N, K)`` from logits (``log_softmax``) or probabilities (``log``, clamped)."""
    if output == "probs":
        return scores.clamp_min(1e-30).log()
    return torch.log_softmax(scores, dim=1)


def ce_loss(lp: Tensor, lab: Tensor) -> Tensor:
    """Cross-entropy ``-log p_lab`` per row, ``(N, K), (N,) -> (N,)``."""
    return -lp.gather(1, lab[:, None]).squeeze(1)


def fooled(lp: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
    """Square's criterion: untargeted ``margin_y <= 0``; targeted ``margin_target >= 0``."""
    if target is None:
        return margin_loss(lp, y) <= 0
    return margin_loss(lp, target) >= 0


def project_box(x_new: Tensor, x: Tensor, eps: float, norm: str) -> Tensor:
    """Project ``x_new`` onto the ``norm`` ball of radius ``eps`` around ``x``, then onto [0, 1]."""
    d = x_new - x
    if norm == "linf":
        d = d.clamp(-eps, eps)
    else:
        n = d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (d.dim() - 1)))
        d = d * (eps / n).clamp(max=1.0)
    return (x + d).clamp(0.0, 1.0)


@hyperparameters
class ScoreAttack(Attack):
    """Base of the score-based attacks: hyperparameter checks and result assembly.

    Subclasses set ``norms`` (the norms the reference supports) and implement :meth:`_attack`,
    which works on a :class:`Ledger` and returns ``x_adv``.
    """

    access = "scores"
    norms = ("linf", "l2")
    criteria = CRITERIA
    #: the radius used when ``eps`` is None, per norm (the reference configs); absent: unbounded
    default_eps: ClassVar[dict[str, float]] = {}
    # the hyperparameters every score attack shares (each attack declares its own after them)
    norm: str = "linf"
    eps: float | None = None
    max_queries: int = 10_000
    criterion: str = "single"
    k: int = 9
    seed: int | None = 0

    def _check_common(self) -> None:
        if self.norm not in self.norms:
            raise InputError(f"{self.name}: norm must be one of {', '.join(self.norms)}, got {self.norm!r}")
        if self.eps is not None and not (isinstance(self.eps, (int, float)) and self.eps > 0
                                         and math.isfinite(self.eps)):
            raise InputError(f"{self.name}: eps must be > 0 for norm={self.norm!r}, got {self.eps!r}")
        if not isinstance(self.max_queries, int) or self.max_queries < 1:
            raise InputError(f"{self.name}: max_queries must be an int >= 1, got {self.max_queries!r}")
        if self.criterion not in CRITERIA:
            raise InputError(f"{self.name}: criterion must be one of {', '.join(CRITERIA)}, got {self.criterion!r}")
        if not isinstance(self.k, int) or self.k < 1:
            raise InputError(f"{self.name}: k (re-queries for criterion='majority') must be >= 1, got {self.k!r}")

    def _check_params(self) -> None:
        """Attack-specific checks (override); called by the template before any query."""

    def _check(self, model: BlackBox, target: Tensor | None) -> None:
        self._check_common()
        self._check_params()

    def _ball(self) -> float | None:
        return float(self.eps) if self.eps is not None else self.default_eps.get(self.norm)

    def _fooled(self, model: BlackBox) -> Fooled:
        """Square's margin criterion on the re-query's log-probabilities (ties count as fooled)."""
        output = model.output
        return lambda out, y, target: fooled(log_probs(out, output), y, target)

    def _run(self, model: BlackBox, x: Tensor, y: Tensor, target: Tensor | None) -> Outcome:
        ledger = Ledger(self, model, x, y, target)
        x_adv = self._attack(ledger) if len(x) else x.clone()
        return ledger.outcome(x_adv)

    def _attack(self, led: Ledger) -> Tensor:
        raise NotImplementedError


class Ledger:
    """Per-image query accounting and success state of one attack run.

    Attributes:
        x, y, target: the clean images ``(N, C, H, W)``, labels ``(N,)`` and targets (or None).
        queries: ``(N,)`` int64, queries charged per image so far.
        done: ``(N,)`` bool, images the attack has fooled (by its own signal).
        g: the run's ``torch.Generator`` (seeded with the attack's ``seed``).
    """

    def __init__(self, attack: ScoreAttack, model: BlackBox, x: Tensor, y: Tensor, target: Tensor | None) -> None:
        self.attack = attack
        self.model = model
        self.x, self.y, self.target = x, y, target
        n = x.shape[0]
        self.cost = int(getattr(model, "query_cost", 1))
        self.max_queries = int(attack.max_queries)
        self.queries = torch.zeros(n, dtype=torch.long, device=x.device)
        self.done = torch.zeros(n, dtype=torch.bool, device=x.device)
        self.g = make_generator(attack.seed, x.device)
        self.charge_checks = bool(getattr(attack, "charge_checks", False))
        self.recheck = attack.criterion == "fast_exp" and bool(model.randomized)
        self.false_alarms = 0

    @property
    def n_steps(self) -> int:
        """How many single-query calls fit in one image's budget (``max_queries // query_cost``)."""
        return self.max_queries // self.cost

    def can(self, calls: int) -> Tensor:
        """Images not yet fooled whose budget still fits ``calls`` more queries each. ``(N,)`` bool."""
        return ~self.done & (self.queries + calls * self.cost <= self.max_queries)

    def query(self, xb: Tensor, owner: Tensor) -> Tensor:
        """Query ``xb`` ``(B, C, H, W)``; row ``j`` is charged to image ``owner[j]``. Returns log-probs ``(B, K)``.

        Calls carry at most as many images as the attacked batch (NES sends ``2q`` probes per image:
        one huge call is slower per image than several batch-sized ones on CPU)."""
        chunk = max(self.x.shape[0], 1)
        parts = []
        for i in range(0, xb.shape[0], chunk):
            parts.append(self.model.query(xb[i:i + chunk]))
            self.queries.index_add_(0, owner[i:i + chunk], torch.full_like(owner[i:i + chunk], self.cost))
        out = parts[0] if len(parts) == 1 else torch.cat(parts)
        return log_probs(out, self.model.output)

    def observe(self, xb: Tensor, idx: Tensor) -> Tensor:
        """Log-probs of a forward the reference does not count: through ``audit`` (reported as
        ``audit_queries``) unless ``charge_checks``, then charged to ``idx``."""
        if self.charge_checks:
            return self.query(xb, idx)
        return log_probs(self.model.audit(xb), self.model.output)

    def check(self, xb: Tensor, idx: Tensor) -> Tensor:
        """Success check of images ``idx`` at ``xb`` (see :meth:`observe`). Marks them done;
        returns the fooled mask ``(len(idx),)``."""
        lp = self.observe(xb, idx)
        return self.mark(lp, idx, xb)

    def mark(self, lp: Tensor, idx: Tensor, xb: Tensor | None = None) -> Tensor:
        """Mark images ``idx`` fooled according to log-probs ``lp`` (rows of ``xb``); returns the mask.

        With ``criterion="fast_exp"`` on a randomized model, claimed successes are re-checked by a
        majority of ``k`` re-queries of ``xb`` first (:meth:`confirm`); a false alarm is not marked."""
        f = fooled(lp, self.y[idx], None if self.target is None else self.target[idx])
        if self.recheck and bool(f.any()):
            if xb is None:
                raise RuntimeError(f"{self.attack.name}: fast_exp needs the queried images to re-check a success")
            claimed = f
            f = torch.zeros_like(claimed)
            f[claimed] = self.confirm(xb[claimed], idx[claimed])
        self.done[idx[f]] = True
        return f

    def confirm(self, xb: Tensor, idx: Tensor) -> Tensor:
        """Majority vote of ``k`` re-queries of ``xb`` ``(M, C, H, W)`` for images ``idx``: ``(M,)`` bool,
        True where more than half say fooled. Uncounted (audit) unless ``charge_checks``, then charged
        to the image; an image whose budget cannot pay all ``k`` is not confirmed."""
        k = int(self.attack.k)
        tgt = None if self.target is None else self.target[idx]
        ok = torch.ones(len(idx), dtype=torch.bool, device=idx.device)
        if self.charge_checks:
            ok = self.queries[idx] + k * self.cost <= self.max_queries
        votes = torch.zeros(len(idx), dtype=torch.long, device=idx.device)
        if bool(ok.any()):
            for _ in range(k):
                lp = self.observe(xb[ok], idx[ok])
                votes[ok] += fooled(lp, self.y[idx[ok]], None if tgt is None else tgt[ok]).long()
        conf = ok & (votes * 2 > k)
        self.false_alarms += int((~conf).sum())
        return conf

    def loss_up(self, lp: Tensor, idx: Tensor) -> Tensor:
        """The loss the CE-based attacks *maximise*: ``CE(y)`` untargeted, ``-CE(target)`` targeted."""
        if self.target is None:
            return ce_loss(lp, self.y[idx])
        return -ce_loss(lp, self.target[idx])

    def outcome(self, x_adv: Tensor) -> Outcome:
        """The run's :class:`Outcome`: the images marked done are the claimed successes (with
        ``fast_exp`` on a randomized model, each already confirmed by :meth:`confirm`)."""
        return Outcome(x_adv=x_adv, success=self.done.clone(), queries=self.queries.clone(),
                       confirmed=self.done.clone() if self.recheck else None,
                       extra={"targeted": self.target is not None, "query_cost": self.cost,
                              "false_alarms": self.false_alarms})


def idx_of(mask: Tensor) -> Tensor:
    """Indices ``(M,)`` of the True entries of a bool mask."""
    return mask.nonzero().flatten()


__all__ = ["CRITERIA", "Ledger", "ScoreAttack", "ce_loss", "fooled", "idx_of", "log_probs", "project_box"]
