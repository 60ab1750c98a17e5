"""BPDA: Backward Pass Differentiable Approximation (Athalye, Carlini & Wagner, ICML 2018,
"Obfuscated gradients give a false sense of security", arXiv 1802.00420, section 4.1).

A defense ``f(g(x))`` whose front-end ``g`` (a denoiser, JPEG, bit-depth quantisation...) has
no useful gradient is attacked by running the **exact** forward pass and replacing ``g`` in the
backward pass by a differentiable ``h`` with ``h(x) ~ g(x)``: the identity (``h(x) = x``, the
straight-through estimator, when ``g`` is close to the identity) or a given surrogate module.

:class:`Preprocessed` is the model form this module expects (``front_end`` and ``classifier``);
:class:`BPDAModule` computes ``classifier(g(x))`` in value with ``h``'s gradient; the ``bpda``
attack runs ``pgd`` or ``apgd`` through it. Every forward pass is still the model's own output
and is counted by the same oracle: the attack runs on a *view* of the caller's white box
(:meth:`~bbdefense.models.BlackBox.with_backend`: the BPDA backend, the caller's counters and
budget), so queries, budget and input checks are unchanged and the caller's object is never
modified.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from torch import Tensor, nn

from ..errors import AccessError, InputError
from ..models import BlackBox, WhiteBox
from ..models.backends import TorchBackend
from .base import ATTACKS, Attack, Outcome, register_attack


class Preprocessed(nn.Module):
    """``classifier(front_end(x))``: a classifier behind an input transformation.

    Shape: ``(N, C, H, W)`` in [0, 1] -> logits ``(N, K)``.
    """

    def __init__(self, front_end: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.front_end = front_end
        self.classifier = classifier
        self.randomized = bool(getattr(front_end, "randomized", False) or getattr(classifier, "randomized", False))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.front_end(x))


class BPDAModule(nn.Module):
    """Forward: ``classifier(front_end(x))``. Backward: as if it were ``classifier(surrogate(x))``
    (``surrogate=None``: the identity).

    Implemented as ``h(x) + (g(x) - h(x)).detach()``: equal to ``g(x)`` in value, with ``h``'s
    Jacobian. Shape: ``(N, C, H, W)`` -> ``(N, K)``.
    """

    def __init__(self, front_end: nn.Module, classifier: nn.Module, surrogate: nn.Module | None = None) -> None:
        super().__init__()
        self.front_end = front_end
        self.classifier = classifier
        self.surrogate = surrogate

    def forward(self, x: Tensor) -> Tensor:
        approx = x if self.surrogate is None else self.surrogate(x)
        exact = self.front_end(x.detach())
        return self.classifier(approx + (exact - approx).detach())


def bpda_view(model: WhiteBox, surrogate: nn.Module | None = None) -> WhiteBox:
    """A view of ``model`` whose forward passes go through :class:`BPDAModule`, charged on
    ``model``'s own counters and budget; ``model`` itself is not modified."""
    module = model.module
    front, clf = getattr(module, "front_end", None), getattr(module, "classifier", None)
    if not isinstance(front, nn.Module) or not isinstance(clf, nn.Module):
        raise AccessError("bpda needs a white box whose module has `front_end` and `classifier` sub-modules "
                          f"(e.g. bbdefense.attacks.bpda.Preprocessed), got {type(module).__name__}")
    return model.with_backend(TorchBackend(BPDAModule(front, clf, surrogate)))


@register_attack
class BPDA(Attack):
    """Run a gradient attack (``pgd`` or ``apgd``) through BPDA.

    Args:
        attack: the inner white-box attack, ``"pgd"`` or ``"apgd"``.
        attack_params: its keyword hyperparameters (e.g. ``{"eps": 0.3, "steps": 40}``).
        surrogate: a differentiable module approximating the front-end (``None``: identity).
        seed: passed to the inner attack unless ``attack_params`` sets one.

    The model must be a :class:`~bbdefense.models.WhiteBox` over a module with ``front_end``
    and ``classifier`` (see :class:`Preprocessed`). Shape: as the inner attack.
    """

    name = "bpda"
    access = "white"

    attack: Literal["pgd", "apgd"] = "pgd"
    attack_params: dict[str, Any] | None = None
    surrogate: nn.Module | None = None
    seed: int | None = 0

    def inner(self) -> Attack:
        if self.attack not in ("pgd", "apgd"):
            raise InputError(f"bpda: attack must be 'pgd' or 'apgd', got {self.attack!r}")
        params = {"seed": self.seed, **(self.attack_params or {})}
        return ATTACKS[self.attack](**params)

    def _check(self, model: BlackBox, target: Tensor | None) -> None:
        self.inner()

    def _run(self, model: BlackBox, x: Tensor, y: Tensor, target: Tensor | None) -> Outcome:
        inner = self.inner()
        res = inner.run(bpda_view(cast(WhiteBox, model), self.surrogate), x, y, target=target)
        return Outcome(x_adv=res.x_adv, success=res.success, queries=res.queries, norm=res.norm, eps=res.eps,
                       extra={**res.extra, "inner": {"attack": inner.name, "params": inner.get_params()}})
