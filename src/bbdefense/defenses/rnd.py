"""Random Noise Defense (RND) and Small Noise Defense (SND): Gaussian noise on each query input.

* RND: Qin, Fan, Zha, Wu, "Random Noise Defense Against Query-Based Black-Box Attacks", NeurIPS 2021.
  No official code; this follows the implementations in snowien/UniG-pytorch ``model/RND.py``
  (commit cacdaf1) and Sizhe-Chen/AAA ``victim.py`` (``n_in``): ``clip(x + nu * N(0, I), 0, 1)``.
  The defense strength is governed by ``nu / mu`` (mu = the attacker's probe/search step). Typical
  nu: 0.02 for standard CIFAR-10 models, 0.05 for adversarially trained ones.
* SND: Byun, Go, Kim, "On the Effectiveness of Small Input Noise for Defending Against Query-Based
  Black-Box Attacks", WACV 2022: the same mechanism with a very small nu (default 0.01), argued to
  keep clean accuracy essentially unchanged while still misleading the attacker's local search.

The noise is added in [0, 1] pixel space, *before* the model's normalisation layer (pitfall 1).

Shape: ``(N, C, H, W)`` in [0, 1] -> logits ``(N, K)``.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..certify import make_noise
from .base import Defense, check_positive, register_defense


@register_defense
class RandomNoiseDefense(Defense):
    """RND: ``f(clip(x + nu * N(0, I), 0, 1))``, fresh noise per query.

    Args:
        module: the owner's model.
        nu: noise standard deviation in pixel units (calibrate it to a clean-accuracy drop with
            :func:`~bbdefense.defenses.calibrate.calibrate_noise`).
        clip: clip the noisy input to [0, 1] (UniG/AAA implementations; the RFD wrapper does not).
        seed: seed of the defense's generator.
    """

    name = "rnd"
    randomized = True

    def __init__(self, module: nn.Module, *, nu: float = 0.02, clip: bool = True, seed: int | None = 0) -> None:
        super().__init__(module, seed=seed)
        self.nu = check_positive(f"{self.name}: nu", nu, allow_zero=True)
        self.clip = bool(clip)

    def defend(self, x: Tensor) -> Tensor:
        if self.nu > 0:
            g = self.generator(x.device)
            x = x + make_noise("gaussian", sigma=self.nu).sample(x.shape, g, dtype=x.dtype)
            if self.clip:
                x = x.clamp(0.0, 1.0)
        return self.inner(x)


@register_defense
class SmallNoiseDefense(RandomNoiseDefense):
    """SND (Byun et al. 2022): RND with a small nu (default 0.01), clipped to [0, 1]."""

    name = "snd"

    def __init__(self, module: nn.Module, *, nu: float = 0.01, clip: bool = True, seed: int | None = 0) -> None:
        super().__init__(module, nu=nu, clip=clip, seed=seed)


__all__ = ["RandomNoiseDefense", "SmallNoiseDefense"]
