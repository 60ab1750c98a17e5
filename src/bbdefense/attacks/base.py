"""The attack interface shared by every attack in :data:`ATTACKS`.

An attack holds only hyperparameters (keyword-only, paper defaults, stored unmodified; foolbox /
scikit-learn style). The model and the data arrive at :meth:`Attack.run`, so one attack object
serves many models and is cheap to build from a config.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from torch import Tensor

from ..errors import AccessError, InputError
from ..models import BlackBox, WhiteBox, validate_images
from ..registry import Registry

Access = Literal["scores", "label", "white"]
Criterion = Literal["single", "majority", "fooled_once"]


@dataclass
class AttackResult:
    """What every attack returns.

    Shape:
        - ``x_adv``: ``(N, C, H, W)`` in [0, 1] and inside the eps-ball around ``x``.
        - ``success``, ``queries``, ``norms``: ``(N,)`` (bool, int64, float32).

    ``queries[i]`` is what image ``i`` was charged on the model (their sum equals the model's
    ``stats.queries`` increase during the run). ``audit_queries`` are verification queries made
    through :meth:`BlackBox.audit`, reported separately and never charged. ``criterion`` records how
    success was decided on a randomized model (``single`` query, ``majority`` of ``k`` re-queries, or
    ``fooled_once``).
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
            "attack": self.attack, "norm": self.norm, "eps": self.eps, "n": int(len(ok)),
            "success_rate": self.success_rate,
            "median_queries_success": float(q.median()) if len(q) else None,
            "mean_queries": float(self.queries.float().mean()) if len(ok) else None,
            "total_queries": int(self.queries.sum()), "audit_queries": self.audit_queries,
            "criterion": self.criterion,
        }


class Attack:
    """Base class. Subclasses set ``name`` and ``access`` and implement :meth:`_run`.

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

    def get_params(self) -> dict[str, Any]:
        """The constructor's keyword arguments as stored; ``type(a)(**a.get_params())`` rebuilds ``a``."""
        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters if k != "self" and hasattr(self, k)}

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

    def run(self, model: BlackBox, x: Tensor, y: Tensor, *, target: Tensor | None = None,
            x_init: Tensor | None = None) -> AttackResult:
        """Attack images ``x`` with true labels ``y`` (untargeted) or toward ``target`` labels.

        ``x_init`` ``(N, C, H, W)``: optional adversarial starting points, one per image, for the
        attacks that start from one (``takes_init``; e.g. targeted HopSkipJump starts from an image of
        the target class, as its reference does). The inputs are never mutated. Raises
        :class:`AccessError` for a model that does not reveal what the attack needs,
        :class:`InputError` for bad images, labels or starting points.
        """
        self.check_model(model)
        validate_images(x, model.input_shape)
        if not isinstance(y, Tensor) or y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise InputError(f"{self.name}: expected labels of shape ({x.shape[0]},), got "
                             f"{tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__}")
        if target is not None and (target.shape != y.shape):
            raise InputError(f"{self.name}: target must have shape {tuple(y.shape)}, got {tuple(target.shape)}")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= model.num_classes):
            raise InputError(f"{self.name}: labels must be in [0, {model.num_classes}), got [{int(y.min())}, "
                             f"{int(y.max())}]")
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
        return self._run(model, x.detach().clone(), y.detach().clone().long(),
                         None if target is None else target.detach().clone().long(), **extra)

    def _run(self, model: BlackBox, x: Tensor, y: Tensor, target: Tensor | None) -> AttackResult:
        raise NotImplementedError


ATTACKS: Registry[type[Attack]] = Registry("attack")


def register_attack(cls: type[Attack]) -> type[Attack]:
    """Class decorator adding ``cls`` to :data:`ATTACKS` under ``cls.name``."""
    ATTACKS.add(cls.name, cls)
    return cls


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


__all__ = ["ATTACKS", "Access", "Attack", "AttackResult", "Criterion", "is_adversarial", "lp_norm", "margin_loss",
           "register_attack"]
