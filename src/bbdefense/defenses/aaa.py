"""AAA: Adversarial Attack on Attackers (linear attractor), a deterministic post-processing of logits.

Chen, Huang, Chen, Wu, Huang, "Adversarial Attack on Attackers: Post-Process to Mitigate Black-Box
Score-Based Query Attacks", NeurIPS 2022. Reference code: Sizhe-Chen/AAA (commit bed8c4b) ``victim.py``
``AAALinear.forward``; independent implementation following ``shared/reference/algorithms.md`` §6.9.

For a query ``x`` (pixels in [0, 1]):

1. ``x <- floor(255 x) / 255`` (8-bit quantisation: attackers' sub-1/255 probes are erased).
2. ``z0 = f(x)``; margin ``m0 = z0[top1] - z0[top2]``; calibration target ``P0 = softmax(z0 / T)[top1]``.
3. ``attractor = (round(m0 / tau + 0.5) - 0.5) * tau``; ``target = attractor - kappa (m0 - attractor)``
   (the margin is reflected around the nearest attractor so the loss landscape the attacker sees
   points the wrong way).
4. ``z`` (init ``z0``) is optimised by Adam(lr, betas 0.9/0.999) for ``num_iter`` steps on
   ``L = mean|margin(z) - target| + w * mean|softmax(z)[top1 of z0] - P0|`` and returned.

The argmax is kept almost always (the margin stays positive because ``target`` keeps the sign of
``m0`` up to the attractor grid) and the calibration term keeps the confidence at the temperature-
scaled value. Defaults: tau 6 (the reference's Square script; class default 4), kappa 1, w 5,
100 iterations, lr 0.1, T 1 (the reference tunes T per model for minimum ECE).

Deterministic: ``randomized = False``.

Shape: ``(N, C, H, W)`` in [0, 1] -> logits ``(N, K)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from .base import Defense, check_positive, register_defense


def quantize8(x: Tensor) -> Tensor:
    """``floor(255 x) / 255``: the 8-bit rounding AAA applies to every query (shape preserved)."""
    return torch.floor(x * 255.0) / 255.0


def aaa_postprocess(z0: Tensor, *, attractor_interval: float = 6.0, reverse_step: float = 1.0,
                    calibration_weight: float = 5.0, num_iter: int = 100, lr: float = 0.1,
                    temperature: float = 1.0) -> Tensor:
    """The AAA logit optimisation (steps 2-4 above) on logits ``z0`` ``(N, K)`` -> ``(N, K)``."""
    if z0.shape[0] == 0:
        return z0.detach().float().clone()
    with torch.inference_mode(False), torch.enable_grad():
        z0 = z0.detach().float().clone()  # a normal tensor even when called under inference_mode
        p0 = F.softmax(z0 / temperature, dim=1).amax(dim=1)
        top2 = z0.topk(2, dim=1)
        top1 = top2.indices[:, 0]
        m0 = top2.values[:, 0] - top2.values[:, 1]
        attractor = ((m0 / attractor_interval + 0.5).round() - 0.5) * attractor_interval
        target = attractor - reverse_step * (m0 - attractor)
        rows = torch.arange(z0.shape[0], device=z0.device)
        z = z0.clone().requires_grad_(True)
        # Adam (torch defaults betas (0.9, 0.999), eps 1e-8) written out: torch.optim's per-step
        # overhead dominates on (N, K) logits.
        m1, m2 = torch.zeros_like(z0), torch.zeros_like(z0)
        for t in range(1, num_iter + 1):
            prob = F.softmax(z, dim=1)
            calib = (prob[rows, top1] - p0).abs().mean()
            v = z.topk(2, dim=1).values
            loss = (v[:, 0] - v[:, 1] - target).abs().mean() + calibration_weight * calib
            (g,) = torch.autograd.grad(loss, z)
            with torch.no_grad():
                m1.mul_(0.9).add_(g, alpha=0.1)
                m2.mul_(0.999).addcmul_(g, g, value=0.001)
                denom = (m2 / (1 - 0.999**t)).sqrt_().add_(1e-8)
                z.addcdiv_(m1, denom, value=-lr / (1 - 0.9**t))
        return z.detach().clone()


@register_defense
class AAA(Defense):
    """AAA-linear (Chen et al. 2022): 8-bit input rounding + attractor-based logit post-processing.

    Args:
        module: the owner's model.
        attractor_interval: tau, the spacing of the margin attractors.
        reverse_step: kappa, how far the margin is reflected past its attractor.
        calibration_weight: w, weight of the confidence-calibration term.
        num_iter: Adam steps on the logits.
        lr: Adam learning rate.
        temperature: T of the calibration target ``softmax(z0 / T)``.
        quantize: apply the 8-bit input rounding (the reference always does).
        seed: unused (AAA is deterministic); kept for the common constructor.
    """

    name = "aaa"
    randomized = False

    def __init__(self, module: nn.Module, *, attractor_interval: float = 6.0, reverse_step: float = 1.0,
                 calibration_weight: float = 5.0, num_iter: int = 100, lr: float = 0.1, temperature: float = 1.0,
                 quantize: bool = True, seed: int | None = 0) -> None:
        super().__init__(module, seed=seed)
        self.attractor_interval = check_positive("aaa: attractor_interval", attractor_interval)
        self.reverse_step = check_positive("aaa: reverse_step", reverse_step, allow_zero=True)
        self.calibration_weight = check_positive("aaa: calibration_weight", calibration_weight, allow_zero=True)
        if not isinstance(num_iter, int) or num_iter < 0:
            raise InputError(f"aaa: num_iter must be an int >= 0, got {num_iter!r}")
        self.num_iter = num_iter
        self.lr = check_positive("aaa: lr", lr)
        self.temperature = check_positive("aaa: temperature", temperature)
        self.quantize = bool(quantize)

    def defend(self, x: Tensor) -> Tensor:
        if self.quantize:
            x = quantize8(x)
        with torch.no_grad():
            z0 = self.inner(x)
        return aaa_postprocess(z0, attractor_interval=self.attractor_interval, reverse_step=self.reverse_step,
                               calibration_weight=self.calibration_weight, num_iter=self.num_iter, lr=self.lr,
                               temperature=self.temperature)


__all__ = ["AAA", "aaa_postprocess", "quantize8"]
