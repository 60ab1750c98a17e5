"""Mixup Inference (MI): classify an average over mixups of the query with clean reference images.

Pang, Xu, Zhu, "Mixup Inference: Better Exploiting Mixup to Defend Adversarial Attacks", ICLR 2020;
independent implementation of the MI-OL / MI-PL variants (a UniG baseline, UniG Table 1 "Mixup").

For a query ``x`` with prediction ``y_hat = argmax f(x)``: draw ``n_samples`` clean reference images
``x_s`` whose labels differ from ``y_hat`` (``mode="ol"``, other labels) or equal it (``"pl"``), mix
``x_tilde = lam * x + (1 - lam) * x_s`` and return ``log(mean_s softmax(f(x_tilde)))`` (log of the
ensemble's probabilities, so ``softmax`` of the output is the MI prediction). Randomized (the draws);
each query costs ``1 + n_samples`` forwards of the wrapped model (the paper's "thirty additional
forward calculations" with ``n_samples = 30``). Defaults: MI-OL, lam 0.6, 30 samples.

Shape: ``(N, C, H, W)`` in [0, 1] -> log-probabilities used as logits ``(N, K)``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ..errors import InputError
from .base import Defense, register_defense


@register_defense
class MixupInference(Defense):
    """Mixup inference (MI-OL / MI-PL).

    Args:
        module: the owner's model.
        reference: ``(x (M, C, H, W), y (M,))`` clean labelled images to mix with (e.g. held-out data).
        lam: mixing weight of the query.
        n_samples: mixups averaged per query.
        mode: ``"ol"`` (other labels) or ``"pl"`` (predicted label).
        seed: seed of the defense's generator (the draws of reference images).
    """

    name = "mixup_inference"
    randomized = True
    ref_x: Tensor  # buffers: the reference images and their labels
    ref_y: Tensor

    def __init__(self, module: nn.Module, *, reference: tuple[Tensor, Tensor] | None = None, lam: float = 0.6,
                 n_samples: int = 30, mode: Literal["ol", "pl"] = "ol", seed: int | None = 0) -> None:
        super().__init__(module, seed=seed)
        if reference is None:
            raise InputError("mixup_inference needs reference=(x, y): clean labelled images to mix queries with")
        xr, yr = reference
        if xr.dim() != 4 or yr.dim() != 1 or xr.shape[0] != yr.shape[0] or xr.shape[0] == 0:
            raise InputError(f"mixup_inference: reference must be (x (M, C, H, W), y (M,)) with M > 0, got "
                             f"{tuple(xr.shape)} and {tuple(yr.shape)}")
        if not 0.0 < lam <= 1.0:
            raise InputError(f"mixup_inference: lam must be in (0, 1], got {lam!r}")
        if not isinstance(n_samples, int) or n_samples < 1:
            raise InputError(f"mixup_inference: n_samples must be an int >= 1, got {n_samples!r}")
        if mode not in ("ol", "pl"):
            raise InputError(f"mixup_inference: mode must be 'ol' or 'pl', got {mode!r}")
        self.lam, self.n_samples, self.mode = float(lam), n_samples, mode
        self.register_buffer("ref_x", xr.detach().float().clone(), persistent=False)
        self.register_buffer("ref_y", yr.detach().long().clone(), persistent=False)

    def _draw(self, pred: Tensor, g: torch.Generator) -> Tensor:
        """Indices ``(N, n_samples)`` of reference images satisfying the OL/PL condition."""
        ry = self.ref_y.to(pred.device)
        ok = (ry[None, :] != pred[:, None]) if self.mode == "ol" else (ry[None, :] == pred[:, None])
        w = ok.float()
        empty = w.sum(dim=1) == 0
        w[empty] = 1.0  # no reference image fits: fall back to uniform draws
        return torch.multinomial(w, self.n_samples, replacement=True, generator=g)

    def defend(self, x: Tensor) -> Tensor:
        g = self.generator(x.device)
        pred = self.inner(x).argmax(dim=1)
        idx = self._draw(pred, g)  # (N, S)
        xs = self.ref_x.to(x.device)[idx]  # (N, S, C, H, W)
        mixed = self.lam * x[:, None] + (1.0 - self.lam) * xs
        probs = torch.softmax(self.inner(mixed.flatten(0, 1)), dim=1).view(x.shape[0], self.n_samples, -1)
        return probs.mean(dim=1).clamp_min(1e-12).log()


__all__ = ["MixupInference"]
