"""BPDA PGD-l2 (Athalye et al. 2018) against a denoised-smoothing pipeline (IRS-Net Table V).

The attacked function is ``f(clip(D(x + delta)))`` with one fresh noise draw per step (EOT 1):
the denoiser and the classifier are differentiated (an evaluator's white-box access), the [0, 1]
clip is replaced by the identity on the backward pass (BPDA). The perturbation is added to the
pixel image, as in the paper (l2 norm 0.5, 20 steps). We use the Madry step ``2.5 eps / steps``
(the paper states alpha = 0.01, which can move at most 0.2 in 20 steps: a weaker attack).

Accuracy is the majority vote of 16 noisy predictions on the attacked images (a cheap stand-in
for the smoothed classifier's prediction), queried through a counted black box.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ...models import BlackBox
from ...training.pgd import pgd_perturb
from ...utils import make_generator
from ..zo_ae_ds.train import clip_st
from .irs_net import IRSDenoiser, noisy_input


class NoisyPipeline(nn.Module):
    """``f(clip_st(D(x + sigma * scale * N(0, I))))``, a fresh draw per forward from its own generator.

    Shape: ``(N, C, H, W)`` -> logits ``(N, K)``.
    """

    def __init__(self, clf: nn.Module, den: IRSDenoiser | None, sigma: float, seed: int = 0) -> None:
        super().__init__()
        self.clf, self.den, self.sigma = clf, den, sigma
        self.g = make_generator(seed)
        self.randomized = True

    def forward(self, x: Tensor) -> Tensor:
        noisy = noisy_input(self.den, self.sigma, x, self.g)
        h = self.den(noisy) if self.den is not None else noisy
        return self.clf(clip_st(h))


def vote_accuracy(clf: nn.Module, den: IRSDenoiser | None, x: Tensor, y: Tensor, sigma: float, *, draws: int = 16,
                  seed: int = 0) -> float:
    """Accuracy of the majority vote over ``draws`` noisy predictions (counted black-box queries)."""
    pipe = NoisyPipeline(clf, den, sigma, seed)
    bb = BlackBox.from_module(clf, input_shape=tuple(x.shape[1:]))  # type: ignore[arg-type]
    votes = torch.zeros(x.shape[0], bb.num_classes)
    with torch.no_grad():
        for _ in range(draws):
            noisy = noisy_input(den, sigma, x, pipe.g)
            h = den(noisy) if den is not None else noisy
            votes[torch.arange(x.shape[0]), bb.predict_label(h.clamp(0, 1))] += 1
    return float((votes.argmax(1) == y).float().mean())


def bpda_pgd_accuracy(clf: nn.Module, den: IRSDenoiser | None, x: Tensor, y: Tensor, *, sigma: float,
                      eps: float = 0.5, steps: int = 20, seed: int = 0) -> tuple[float, float]:
    """Returns ``(adversarial accuracy, clean accuracy)`` of the vote under BPDA PGD-l2 at ``eps``."""
    clf.eval()
    pipe = NoisyPipeline(clf, den, sigma, seed)
    for p in pipe.parameters():
        p.requires_grad_(False)
    x_adv = pgd_perturb(pipe, x, y, eps=eps, norm="l2", steps=steps, generator=make_generator(seed + 1))
    for p in pipe.parameters():
        p.requires_grad_(True)
    return (vote_accuracy(clf, den, x_adv, y, sigma, seed=seed + 2),
            vote_accuracy(clf, den, x, y, sigma, seed=seed + 2))
