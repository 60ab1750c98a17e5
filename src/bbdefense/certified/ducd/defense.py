"""DUCD step 2: noise-augmented fine-tuning and the certified classifier of Algorithm 3
(Li et al., "Privacy-preserving Universal Adversarial Defense for Black-box Models",
arXiv 2408.10647, §III-C and Algorithm 3; no public code, see algorithms.md §4).

* :func:`noise_finetune`: fine-tune a classifier (a copy) on inputs ``x + eps``, ``eps ~ noise``
  (any :data:`bbdefense.certify.NOISES` family) in [0, 1] pixel space, before the model's
  normalisation layer (pitfall 1).
* :class:`CertifiedClassifier`: randomized smoothing of a base model (Cohen et al. 2019
  PREDICT/CERTIFY through :class:`bbdefense.certify.Smooth`, which counts every noisy query),
  then Algorithm 3's two extra rules on the Monte-Carlo class counts of the ``n`` samples:

  - abstain threshold ``zeta``: abstain if some class ``c != c_A`` has
    ``counts[c] > zeta * counts[c_A]`` (lines 11-13 and 18-20);
  - certification threshold ``iota``: certify only if ``counts[c_A] / n > iota`` (lines 21-25).

  The paper gives no values; the defaults ``zeta = 1.0`` (never stricter than the argmax) and
  ``iota = 0.5`` make Algorithm 3 coincide with Cohen's abstain rule on the point estimate, so the
  guarantee is Cohen's (``pA_lower > 1/2``, one-sided Clopper-Pearson at ``alpha``). Larger
  ``iota`` / smaller ``zeta`` only add abstentions, so they never invalidate a certificate.

Shapes: ``x`` ``(N, C, H, W)`` in [0, 1]; certificates one per image.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from ...data import ImageDataset
from ...errors import InputError
from ...events import EventCallback
from ...models import BlackBox
from ...utils import make_generator


def noise_finetune(module: nn.Module, data: ImageDataset, *, noise: str = "gaussian", sigma: float = 0.25,
                   noise_params: dict[str, Any] | None = None, epochs: int = 3, lr: float = 1e-3,
                   batch_size: int = 64, seed: int = 0, on_event: EventCallback | None = None) -> nn.Module:
    """A copy of ``module`` fine-tuned with noise augmentation: cross-entropy of ``f(x + eps)``
    against ``data.y``, ``eps ~ make_noise(noise, sigma, **noise_params)`` per coordinate in [0, 1]
    pixel space (not clipped, as Cohen's ``train.py``). Adam, constant ``lr``.

    This is the ``noise`` training mode (:func:`bbdefense.training.classifier_step` on
    :func:`bbdefense.training.fit`) with one generator seeded ``seed`` for both the batch order and the
    noise (``train --mode noise`` uses ``seed`` and ``seed + 1``).

    Shapes: ``data.x`` ``(N, C, H, W)``; returns the fine-tuned copy in eval mode.
    """
    from ...training import TrainConfig, classifier_step, fit
    from ...training.train import optim_config

    if not sigma > 0:
        raise InputError(f"sigma must be > 0, got {sigma}")
    if epochs < 1 or batch_size < 1:
        raise InputError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    cfg = TrainConfig(mode="noise", noise=noise, sigma=sigma, noise_params=dict(noise_params or {}), epochs=epochs,
                      lr=lr, batch_size=batch_size, optimizer="adam", seed=seed)
    cfg.check()  # raises on an unknown noise family or parameter
    m = copy.deepcopy(module)
    g = make_generator(seed)
    fit(m.parameters(), data, classifier_step(m, cfg, g), epochs=epochs, batch_size=batch_size, generator=g,
        optim=optim_config(cfg), modules=[m], task="finetune", on_event=on_event)
    return m.eval()


class CertifiedClassifier:
    """Algorithm 3 of DUCD on top of Cohen's smoothing of ``model`` with ``noise``.

    Args:
        model: the base classifier as a :class:`BlackBox` (every noisy query is counted on it).
        noise: a noise object from :func:`bbdefense.certify.make_noise`.
        zeta: abstain threshold in (0, 1]; ``iota``: certification threshold in [0, 1).
        n0, n, alpha, batch_size: Cohen's CERTIFY settings (selection / estimation draws).
    """

    def __init__(self, model: BlackBox, noise: Any, *, zeta: float = 1.0, iota: float = 0.5, n0: int = 100,
                 n: int = 1000, alpha: float = 0.001, batch_size: int = 1000) -> None:
        from ...certify import Smooth

        if not 0 < zeta <= 1:
            raise InputError(f"zeta must be in (0, 1], got {zeta}")
        if not 0 <= iota < 1:
            raise InputError(f"iota must be in [0, 1), got {iota}")
        self.model = model
        self.noise = noise
        self.zeta, self.iota = float(zeta), float(iota)
        self.n0, self.n, self.alpha, self.batch_size = int(n0), int(n), float(alpha), int(batch_size)
        self.smooth = Smooth(model, noise)

    def params(self) -> dict[str, Any]:
        return {"zeta": self.zeta, "iota": self.iota, "n0": self.n0, "n": self.n, "alpha": self.alpha}

    def algorithm3_passes(self, counts: list[int] | Tensor, label: int) -> bool:
        """Lines 18-25 of Algorithm 3 for the class ``label`` given the ``n``-sample counts."""
        c = torch.as_tensor(counts, dtype=torch.float64)
        if label < 0 or label >= len(c):
            return False
        ca = c[label]
        others = torch.cat([c[:label], c[label + 1:]])
        if bool((others > self.zeta * ca).any()):
            return False
        return bool(ca / max(float(c.sum()), 1.0) > self.iota)

    def certify(self, x: Tensor, *, seed: int = 0, **kw: Any) -> list[Any]:
        """One :class:`bbdefense.certify.Certificate` per image, with Algorithm 3's abstentions
        applied (an abstaining certificate has ``label = -1`` and ``abstain = True``). ``kw``: further
        options of :meth:`bbdefense.certify.Smooth.certify` (``method="sequential"``, ``radii``, ``max_n``,
        ``norm``: the estimation counts the rules read are then the sequential test's)."""
        certs = self.smooth.certify(x, n0=self.n0, n=self.n, alpha=self.alpha, batch_size=self.batch_size,
                                    seed=seed, **kw)
        out = []
        for c in certs:
            if not c.abstain and not self.algorithm3_passes(c.counts, c.label):
                c = dataclasses.replace(c, label=-1, abstain=True,
                                        radius={k: _abstain_radius(v) for k, v in c.radius.items()})
            out.append(c)
        return out


def _abstain_radius(v: float) -> float:
    return 0.0  # bbdefense.certify's convention: an abstention has label -1 and every radius 0.0


__all__ = ["CertifiedClassifier", "noise_finetune"]
