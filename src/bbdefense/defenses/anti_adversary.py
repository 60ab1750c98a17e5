"""Anti-adversary layer: move each query *toward* its predicted class before classifying it.

Alfarra, Perez, Thabet, Bibi, Torr, Ghanem, "Combating Adversaries with Anti-Adversaries", AAAI 2022.
Reference code: MotasemAlfarra/Combating-Adversaries-with-Anti-Adversaries (commit 44ea3ab) ``Anti_Adv.py``;
independent implementation. A UniG baseline (UniG Table 1, "Anti-adv").

With pseudo-label ``t = argmax f(x)`` and ``gamma_0 = 0``:
``gamma_{i+1} = gamma_i - alpha * sign(grad_gamma CE(f(x + gamma_i), t))`` for ``k`` steps, output
``f(x + gamma_k)``. The reference works on the *normalised* input (after mean/std), so for zoo
classifiers (``normalize`` + ``body`` + ``head``) the step is taken in normalised units as there;
for any other module it is taken in the module's input space. No clipping (as the reference).
Defaults k = 2, alpha = 0.15 (the reference's README run). Deterministic. Each query costs
``k + 2`` forwards of the wrapped model (pseudo-label, k gradient steps, final prediction).

Shape: ``(N, C, H, W)`` in [0, 1] -> logits ``(N, K)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from .base import Defense, check_positive, register_defense


@register_defense
class AntiAdversary(Defense):
    """Anti-adversary wrapper (k signed-gradient steps toward the predicted class).

    Args:
        module: the owner's model.
        k: number of anti-adversarial steps.
        alpha: step size (normalised units for zoo classifiers, else input units).
        seed: unused (deterministic); kept for the common constructor.
    """

    name = "anti_adversary"
    randomized = False

    def __init__(self, module: nn.Module, *, k: int = 2, alpha: float = 0.15, seed: int | None = 0) -> None:
        super().__init__(module, seed=seed)
        if not isinstance(k, int) or k < 0:
            raise InputError(f"anti_adversary: k must be an int >= 0, got {k!r}")
        self.k = k
        self.alpha = check_positive("anti_adversary: alpha", alpha, allow_zero=True)
        m = self.module
        self._split = all(hasattr(m, a) for a in ("normalize", "body", "head"))

    def _logits(self, z: Tensor) -> Tensor:
        self.stats.inner_queries += int(z.shape[0])
        if self._split:
            zoo = self.zoo_module()
            return zoo.head(zoo.body(z))
        out: Tensor = self.module(z)
        return out

    def defend(self, x: Tensor) -> Tensor:
        with torch.inference_mode(False), torch.enable_grad():
            x = x.clone() if x.is_inference() else x
            with torch.no_grad():
                z = self.zoo_module().normalize(x) if self._split else x
                t = self._logits(z).argmax(dim=1)
            gamma = torch.zeros_like(z, requires_grad=True)
            for _ in range(self.k if self.alpha > 0 else 0):
                loss = F.cross_entropy(self._logits(z + gamma), t)
                (g,) = torch.autograd.grad(loss, gamma)
                with torch.no_grad():
                    gamma -= self.alpha * g.sign()
            with torch.no_grad():
                return self._logits(z + gamma.detach())


__all__ = ["AntiAdversary"]
