"""The owner-side defense contract: a defense is an ``nn.Module`` wrapping the owner's module that is
itself a model (logits out), so defenses compose and attacks need no special case.

Every defense

* is built as ``DEFENSES[name](module, **config)`` with keyword hyperparameters (paper defaults),
* declares ``randomized`` (the same input can give different outputs) and takes ``seed``; it builds
  its own ``torch.Generator`` (never the global RNG), so two defenses with the same seed give the
  same outputs on the same sequence of queries,
* keeps its own query stats (:class:`DefenseStats`): ``queries`` = images that entered this
  defense's ``forward``, ``inner_queries`` = images it forwarded to the wrapped module. Wrapping a
  defense in another nests exactly: ``outer.stats.inner_queries == inner.stats.queries``, and a
  :class:`~bbdefense.models.BlackBox` around the outermost defense counts ``outer.stats.queries``.

Shape: ``(N, C, H, W)`` float32 in [0, 1] -> logits ``(N, K)``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..registry import Registry
from ..utils import make_generator

if TYPE_CHECKING:
    from ..models.zoo.base import ImageClassifier


@dataclass
class DefenseStats:
    """Counters of one defense: ``calls`` (batches), ``queries`` (images in), ``inner_queries``
    (images forwarded to the wrapped module; e.g. ``n_samples`` per image for Mixup inference)."""

    calls: int = 0
    queries: int = 0
    inner_queries: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"calls": self.calls, "queries": self.queries, "inner_queries": self.inner_queries}


class Defense(nn.Module):
    """Base class of owner-side defenses. Subclasses set ``name`` and ``randomized`` and implement
    :meth:`defend` (the defended logits of a batch), calling :meth:`inner` (or :meth:`inner_embed`)
    for every forward of the wrapped module so that the stats stay exact.

    Args:
        module: the owner's model, ``(N, C, H, W)`` in [0, 1] -> logits ``(N, K)`` (any ``nn.Module``,
            including another :class:`Defense`).
        seed: seed of the defense's own generator (``None``: fresh OS entropy).
    """

    name: ClassVar[str] = "defense"
    randomized: ClassVar[bool] = False

    def __init__(self, module: nn.Module, *, seed: int | None = 0) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise InputError(f"{self.name}: expected the owner's torch.nn.Module, got {type(module).__name__}")
        self.module = module.eval()
        self.seed = seed
        self.stats = DefenseStats()
        self._gen: torch.Generator | None = None

    # ------------------------------------------------------------------ randomness
    def generator(self, device: torch.device) -> torch.Generator:
        """The defense's generator on ``device`` (created from ``seed`` on first use)."""
        if self._gen is None or self._gen.device != device:
            self._gen = make_generator(self.seed, device)
        return self._gen

    def reseed(self, seed: int | None = None) -> None:
        """Restart the random stream (from ``seed``, or from the constructor's seed)."""
        if seed is not None:
            self.seed = seed
        self._gen = None

    def reset_state(self) -> None:
        """Forget what the defense carries from one query to the next (nothing by default; UniG's
        momentum). The randomness is :meth:`reseed`'s."""

    def restart(self, seed: int | None = None) -> None:
        """Start afresh, as if just deployed: :meth:`reseed` (with ``seed``) and :meth:`reset_state`, and
        the same, each from its own constructor seed, for every defense nested inside (``outer(inner(net))``).
        An evaluation restarts the defense before each attack run, so a run's result does not depend on
        which runs came before it (nor on whether a resumed run directory skipped them)."""
        for sub in self.modules():
            if isinstance(sub, Defense):
                sub.reseed(seed if sub is self else None)
                sub.reset_state()

    def reset_stats(self) -> None:
        self.stats = DefenseStats()

    # ------------------------------------------------------------------ forwarding
    def inner(self, x: Tensor) -> Tensor:
        """Logits of the wrapped module, counted in ``stats.inner_queries``."""
        self.stats.inner_queries += int(x.shape[0])
        out: Tensor = self.module(x)
        return out

    def inner_embed(self, x: Tensor) -> Tensor:
        """Penultimate features of the wrapped zoo classifier (``embed``), counted like :meth:`inner`."""
        if not hasattr(self.module, "embed") or not hasattr(self.module, "head"):
            raise InputError(f"{self.name} needs a classifier exposing embed(x) and head (a zoo ImageClassifier), "
                             f"got {type(self.module).__name__}")
        self.stats.inner_queries += int(x.shape[0])
        return self.zoo_module().embed(x)

    def zoo_module(self) -> ImageClassifier:
        """The wrapped module seen as a zoo classifier (``normalize``, ``body``, ``head``, ``embed``).

        Only a static view: callers check first that the parts they use exist (duck typing, so a
        non-zoo module with the same parts works too)."""
        return cast("ImageClassifier", self.module)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 4:
            raise InputError(f"{self.name}: expected images of shape (N, C, H, W), got "
                             f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        self.stats.calls += 1
        self.stats.queries += int(x.shape[0])
        return self.defend(x)

    def defend(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------------ records
    def get_params(self) -> dict[str, Any]:
        """The keyword hyperparameters as stored (``type(d)(module, **d.get_params())`` rebuilds it)."""
        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters
                if k not in ("self", "module") and hasattr(self, k) and not isinstance(getattr(self, k), Tensor)}

    def describe(self) -> dict[str, Any]:
        return {"defense": self.name, "randomized": self.randomized, "params": self.get_params(),
                "stats": self.stats.as_dict()}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())


DEFENSES: Registry[type[Defense]] = Registry("defense")


def register_defense(cls: type[Defense]) -> type[Defense]:
    """Class decorator adding ``cls`` to :data:`DEFENSES` under ``cls.name``."""
    DEFENSES.add(cls.name, cls)
    return cls


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Raise :class:`InputError` unless ``value`` > 0 (or >= 0)."""
    ok = value >= 0 if allow_zero else value > 0
    if not isinstance(value, (int, float)) or not ok:
        raise InputError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return float(value)


def unwrap(module: nn.Module) -> nn.Module:
    """The owner's undefended module under any stack of defenses."""
    while isinstance(module, Defense):
        module = module.module
    return module


__all__ = ["DEFENSES", "Defense", "DefenseStats", "check_positive", "register_defense", "unwrap"]
