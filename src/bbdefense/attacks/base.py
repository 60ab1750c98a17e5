"""The attack interface shared by every attack in :data:`ATTACKS`.

An attack holds only hyperparameters (declared once as annotated fields, see :func:`register_attack`;
keyword-only, paper defaults, stored unmodified; foolbox /
scikit-learn style). The model and the data arrive at :meth:`Attack.run`, so one attack object
serves many models and is cheap to build from a config.

:meth:`Attack.run` is a **final template** (foolbox's ``@final run``): it validates the input,
calls the attack's :meth:`Attack._run` (the algorithm, which returns an :class:`Outcome`), clips
``x_adv`` to the box and the eps-ball, applies the success criterion on the returned ``x_adv``
(:mod:`bbdefense.attacks.criteria`, through ``audit``), checks that the per-image queries sum to
the oracle's counter delta, and builds the one :class:`AttackResult`. Subclasses never override
``run`` (refused at class creation).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar, dataclass_transform, final

import torch
from torch import Tensor

from ..errors import AccessError, InputError
from ..models import BlackBox, WhiteBox, validate_images
from ..registry import Registry
from ..training.pgd import project
from . import criteria as _criteria

Access = Literal["scores", "label", "white"]
Criterion = Literal["single", "majority", "fooled_once", "fast_exp"]
#: relative slack of the eps-ball: points within ``eps * (1 + BALL_RTOL)`` are left untouched (float
#: rounding of an attack's own projection); points beyond are projected onto the ball
BALL_RTOL = 1e-6


@dataclass
class AttackResult:
    """What every attack returns.

    Shape:
        - ``x_adv``: ``(N, C, H, W)`` in [0, 1] and inside the eps-ball around ``x``.
        - ``success``, ``queries``, ``norms``: ``(N,)`` (bool, int64, float32).

    ``queries[i]`` is what image ``i`` was charged on the model (their sum equals the model's
    ``stats.queries`` increase during the run). ``audit_queries`` are verification queries made
    through :meth:`BlackBox.audit` (the model's ``stats.audit_queries`` increase), reported
    separately and never charged to an image. ``criterion`` records how success was decided on a
    randomized model (:mod:`bbdefense.attacks.criteria`: ``single``, ``majority@k``,
    ``fooled_once``, ``fast_exp@k``).
    """

    x_adv: Tensor
    success: Tensor
    queries: Tensor
    norms: Tensor
    attack: str
    params: dict[str, Any]
    norm: str
    eps: float | None
    audit_queries: int = 0
    criterion: str = "single"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean()) if len(self.success) else 0.0

    def summary(self) -> dict[str, Any]:
        ok = self.success
        q = self.queries[ok].float()
        return {
            "attack": self.attack, "norm": self.norm, "eps": self.eps, "n": len(ok),
            "success_rate": self.success_rate,
            # the median of the evaluation tables (statistics.median = numpy's: the mean of the two middle
            # values), not torch.median's lower median
            "median_queries_success": float(statistics.median(q.tolist())) if len(q) else None,
            "mean_queries": float(self.queries.float().mean()) if len(ok) else None,
            "total_queries": int(self.queries.sum()), "audit_queries": self.audit_queries,
            "criterion": self.criterion,
        }


@dataclass
class Outcome:
    """What an attack's :meth:`Attack._run` returns to the template.

    ``x_adv`` ``(N, C, H, W)``; ``success`` ``(N,)`` bool, the attack's own verdict; ``queries``
    ``(N,)`` int64 charged per image; ``confirmed`` ``(N,)`` bool or None, the successes a
    ``fast_exp`` attack confirmed during the run; ``norm``/``eps`` override the attack's own
    (attacks that run an inner attack); ``extra`` goes to :attr:`AttackResult.extra`.
    """

    x_adv: Tensor
    success: Tensor
    queries: Tensor
    confirmed: Tensor | None = None
    norm: str | None = None
    eps: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Attack:
    """Base class. Subclasses set ``name`` and ``access``, declare ``norms``/``criteria``, and
    implement :meth:`_run` (never :meth:`run`, the template).

    ``access`` is what the attack needs from the model: ``"scores"`` (logits or probabilities),
    ``"label"`` (top-1 only; works on any black box) or ``"white"`` (a :class:`WhiteBox`).
    """

    name: ClassVar[str] = "attack"
    access: ClassVar[Access] = "scores"
    #: the norms the attack (and its reference) supports; ``norm=`` outside them is an InputError
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    #: constructor arguments without a default that hyperparameters alone cannot give (e.g. a
    #: surrogate model); generic runners (the demo, sweeps) skip attacks that require any
    requires: ClassVar[tuple[str, ...]] = ()
    #: whether :meth:`run` accepts ``x_init`` (adversarial starting points; decision attacks)
    takes_init: ClassVar[bool] = False
    #: the success criteria on randomized models the attack supports (its ``criterion=``
    #: hyperparameter, with ``k``); empty: none (white-box attacks). See :mod:`bbdefense.attacks.criteria`.
    criteria: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "run" in cls.__dict__:
            raise TypeError(f"{cls.__name__} overrides Attack.run, the final template; implement _run instead")

    #: hyperparameters listed last by :meth:`param_names` (and so by ``get_params`` and ``repr``), in this
    #: order, wherever they are declared (a base such as ``ScoreAttack`` declares the shared ones once)
    trailing: ClassVar[tuple[str, ...]] = ("criterion", "k", "seed")

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """The hyperparameters the constructor takes (keyword names), declared once here so that
        callers never inspect signatures themselves: the declared fields (:func:`hyperparameters`), those
        named in ``trailing`` last; a hand-written ``__init__``'s keywords in signature order."""
        if dataclasses.is_dataclass(cls):
            names = [f.name for f in dataclasses.fields(cls)]
            return tuple(sorted(names, key=lambda k: cls.trailing.index(k) + 1 if k in cls.trailing else 0))
        return tuple(k for k in inspect.signature(cls.__init__).parameters if k != "self")

    def get_params(self) -> dict[str, Any]:
        """The constructor's keyword arguments as stored; ``type(a)(**a.get_params())`` rebuilds ``a``."""
        return {k: getattr(self, k) for k in self.param_names() if hasattr(self, k)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def check_model(self, model: BlackBox) -> None:
        """Raise :class:`AccessError` if ``model`` does not grant the access this attack needs."""
        if not isinstance(model, BlackBox):
            raise InputError(f"{self.name}: expected a BlackBox model, got {type(model).__name__}")
        if self.access == "scores" and not model.reveals_scores:
            raise AccessError(f"{self.name} is a score-based attack and needs logits or probabilities; "
                              f"the model reveals only {model.output}")
        if self.access == "white" and not isinstance(model, WhiteBox):
            raise AccessError(f"{self.name} is a white-box attack and needs a WhiteBox model, "
                              f"got {type(model).__name__}")

    @final
    def __call__(self, model: BlackBox, x: Tensor, y: Tensor, *, target: Tensor | None = None,
                 x_init: Tensor | None = None) -> Tensor:
        """torchattacks-style call: ``x_adv = attack(model, x, y)`` returns the adversarial images
        ``(N, C, H, W)`` of :meth:`run` (which returns the whole :class:`AttackResult`: success, queries,
        norms). The model is passed per call, as in :meth:`run`: a query-counted :class:`BlackBox`."""
        return self.run(model, x, y, target=target, x_init=x_init).x_adv

    def run(self, model: BlackBox, x: Tensor, y: Tensor, *, target: Tensor | None = None,
            x_init: Tensor | None = None) -> AttackResult:
        """Attack images ``x`` with true labels ``y`` (untargeted) or toward ``target`` labels.

        ``x_init`` ``(N, C, H, W)``: optional adversarial starting points, one per image, for the
        attacks that start from one (``takes_init``; e.g. targeted HopSkipJump starts from an image of
        the target class, as its reference does). The inputs are never mutated. Raises
        :class:`AccessError` for a model that does not reveal what the attack needs,
        :class:`InputError` for bad images, labels, targets, starting points or hyperparameters
        (before any query).

        The template: validate; ``_run``; clip ``x_adv`` to [0, 1] and the eps-ball (a moved point's
        claimed success is re-checked through ``audit``); decide success under ``criterion`` on the
        returned ``x_adv`` (:func:`bbdefense.attacks.criteria.decide`); check ``sum(queries)`` equals
        the oracle's ``stats.queries`` delta; build the :class:`AttackResult` (norms computed once).
        """
        self.check_model(model)
        validate_images(x, model.input_shape)
        if not isinstance(y, Tensor) or y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise InputError(f"{self.name}: expected labels of shape ({x.shape[0]},), got "
                             f"{tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__}")
        if target is not None and (not isinstance(target, Tensor) or target.shape != y.shape):
            raise InputError(f"{self.name}: target must have shape {tuple(y.shape)}, got "
                             f"{tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__}")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= model.num_classes):
            raise InputError(f"{self.name}: labels must be in [0, {model.num_classes}), got [{int(y.min())}, "
                             f"{int(y.max())}]")
        if target is not None and len(target) and (int(target.min()) < 0 or int(target.max()) >= model.num_classes):
            raise InputError(f"{self.name}: target labels must be in [0, {model.num_classes})")
        extra: dict[str, Tensor] = {}
        if x_init is not None:
            if not self.takes_init:
                raise InputError(f"{self.name} takes no starting images (x_init); only "
                                 f"{', '.join(n for n in ATTACKS if ATTACKS[n].takes_init)} do")
            if not isinstance(x_init, Tensor) or x_init.shape != x.shape:
                raise InputError(f"{self.name}: x_init must have the images' shape {tuple(x.shape)}, got "
                                 f"{tuple(x_init.shape) if isinstance(x_init, Tensor) else type(x_init).__name__}")
            validate_images(x_init, model.input_shape)
            extra["x_init"] = x_init.detach().clone().to(x.device)
        self._check(model, target)
        self._check_ball()
        x0, y0 = x.detach().clone(), y.detach().clone().long()
        t0 = None if target is None else target.detach().clone().long()
        q0, a0 = model.stats.queries, model.stats.audit_queries
        out = self._run(model, x0, y0, t0, **extra)
        return self._finish(model, x0, y0, t0, out, q0, a0)

    def _finish(self, model: BlackBox, x: Tensor, y: Tensor, target: Tensor | None, out: Outcome, q0: int,
                a0: int) -> AttackResult:
        """The template's tail: clip, decide success, check the ledger, build the result."""
        norm = out.norm if out.norm is not None else str(getattr(self, "norm", "linf"))
        eps = out.eps if out.norm is not None else self._ball()
        x_adv = out.x_adv.detach()
        claimed = out.success.to(torch.bool)
        x_adv, moved = clip_to_ball(x_adv, x, norm, eps)
        fooled = self._fooled(model)
        if bool((moved & claimed).any()):  # a clipped point is no longer the one the attack verified
            i = (moved & claimed).nonzero().squeeze(1)
            claimed = claimed.clone()
            claimed[i] = _criteria.votes(model, x_adv[i], y[i], None if target is None else target[i], 1,
                                         fooled).to(claimed.device) > 0
        crit = getattr(self, "criterion", "single") if self.criteria else "single"
        k = int(getattr(self, "k", 1))
        success = claimed
        if self.criteria:
            success = _criteria.decide(model, crit, k, x_adv, y, target, claimed, out.confirmed, fooled)
        queries = out.queries.long()
        spent = model.stats.queries - q0
        if int(queries.sum()) != spent:  # an internal accounting bug, never user input
            raise RuntimeError(f"{self.name}: per-image queries {int(queries.sum())} != oracle delta {spent}")
        rep_eps = out.eps if out.norm is not None else getattr(self, "eps", None)
        return AttackResult(x_adv=x_adv, success=success, queries=queries, norms=lp_norm(x_adv - x, norm).float(),
                            attack=self.name, params=self.get_params(), norm=norm,
                            eps=None if rep_eps is None else float(rep_eps),
                            audit_queries=model.stats.audit_queries - a0,
                            criterion=_criteria.label(crit, k), extra=dict(out.extra))

    def _check(self, model: BlackBox, target: Tensor | None) -> None:
        """Attack-specific hyperparameter checks (override); called by :meth:`run` before any query."""

    def _check_ball(self) -> None:
        """The common checks of ``norm``, ``eps`` and ``criterion``/``k`` (after :meth:`_check`)."""
        norm = getattr(self, "norm", None)
        if norm is not None and norm not in self.norms:
            raise InputError(f"{self.name}: norm must be one of {', '.join(self.norms)}, got {norm!r}")
        eps = getattr(self, "eps", None)
        if eps is not None and not (isinstance(eps, (int, float)) and eps > 0 and math.isfinite(eps)):
            raise InputError(f"{self.name}: eps must be > 0 or None, got {eps!r}")
        if self.criteria:
            _criteria.check(self.name, getattr(self, "criterion", "single"), getattr(self, "k", 1), self.criteria)

    def _ball(self) -> float | None:
        """The radius ``x_adv`` is clipped to (override where a default applies when ``eps`` is None)."""
        eps = getattr(self, "eps", None)
        return None if eps is None else float(eps)

    def _fooled(self, model: BlackBox) -> _criteria.Fooled:
        """How a re-query's output says "fooled" (default top-1; score attacks use their margin)."""
        return _criteria.top1_fooled

    def _run(self, model: BlackBox, x: Tensor, y: Tensor, target: Tensor | None) -> Outcome:
        raise NotImplementedError


ATTACKS: Registry[type[Attack]] = Registry("attack")


A = TypeVar("A", bound=type[Attack])


@dataclass_transform(kw_only_default=True, eq_default=False)
def hyperparameters(cls: A) -> A:
    """Class decorator: ``cls``'s hyperparameters, declared once as annotated class attributes with their
    paper defaults (``eps: float = 0.3``; ``ClassVar`` ones are not hyperparameters), become its keyword-only
    constructor (a dataclass ``__init__``: stored unmodified, identity equality, :meth:`Attack.__repr__`).
    A subclass inherits its bases' fields and may re-declare a default; a base (``ScoreAttack``,
    ``DecisionAttack``) declares the fields its attacks share once."""
    dataclasses.dataclass(cls, kw_only=True, eq=False, repr=False)  # in place (no slots): cls itself
    return cls


@dataclass_transform(kw_only_default=True, eq_default=False)
def register_attack(cls: A) -> A:
    """Class decorator: :func:`hyperparameters`, then add ``cls`` to :data:`ATTACKS` under ``cls.name``."""
    hyperparameters(cls)
    ATTACKS.add(cls.name, cls)
    return cls


def clip_to_ball(x_adv: Tensor, x: Tensor, norm: str, eps: float | None) -> tuple[Tensor, Tensor]:
    """Clip ``x_adv`` to [0, 1] and the ``norm`` ball of radius ``eps`` around ``x`` (``None``: no ball).

    linf is an exact clamp (a no-op on points inside); l2/l1 rows beyond ``eps * (1 + BALL_RTOL)``
    are projected. Returns ``(x_adv, moved)`` with ``moved`` ``(N,)`` bool the rows that changed.
    """
    out = x_adv
    if eps is not None and len(x_adv):
        if norm == "linf":
            out = torch.minimum(torch.maximum(out, x - eps), x + eps)
        else:
            d = out - x
            far = lp_norm(d, norm) > eps * (1 + BALL_RTOL)
            if bool(far.any()):
                out = out.clone()
                out[far] = x[far] + project(d[far], eps, norm)  # type: ignore[arg-type]  # norm checked in __init__
    out = out.clamp(0.0, 1.0)
    moved = (out != x_adv).flatten(1).any(dim=1) if len(x_adv) else torch.zeros(0, dtype=torch.bool)
    return out, moved


def lp_norm(delta: Tensor, norm: str) -> Tensor:
    """Per-example norm of ``delta`` (``(N, ...)`` -> ``(N,)``) for ``linf``, ``l2`` or ``l1``."""
    flat = delta.flatten(1)
    if norm == "linf":
        return flat.abs().amax(dim=1)
    if norm == "l2":
        return flat.norm(p=2, dim=1)
    if norm == "l1":
        return flat.abs().sum(dim=1)
    raise InputError(f"unknown norm {norm!r}; choose linf, l2 or l1")


def margin_loss(scores: Tensor, y: Tensor) -> Tensor:
    """``score_y - max_{j != y} score_j`` per example (Square's untargeted loss; <= 0 means fooled).

    Shape: ``(N, K)``, ``(N,)`` -> ``(N,)``.
    """
    true = scores.gather(1, y[:, None]).squeeze(1)
    other = scores.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return true - other.amax(dim=1)


def is_adversarial(pred: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
    """Success of top-1 predictions: ``pred != y`` (untargeted) or ``pred == target``."""
    return pred.eq(target) if target is not None else pred.ne(y)


__all__ = ["ATTACKS", "BALL_RTOL", "Access", "Attack", "AttackResult", "Criterion", "Outcome", "clip_to_ball",
           "hyperparameters", "is_adversarial", "lp_norm", "margin_loss", "register_attack"]
