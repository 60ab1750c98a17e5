"""Cohen et al. (ICML 2019) CERTIFY over a black box composed with a white-box pre-processor.

The smoothed classifier is ``g(x) = argmax_c P(f(pre(x + delta)) = c)``, ``delta ~ N(0, sigma^2 I)``
in [0, 1] pixel space, where ``pre`` is the defender's denoiser (+ encoder/decoder) and ``f`` the
query-counted :class:`~bbdefense.models.BlackBox`. Every noisy sample is one black-box query.

Algorithm (locuslab/smoothing ``code/core.py`` @ 78a4d94, reused unchanged by Salman et al. and
ZO-AE-DS): ``n0`` draws select the top class, ``n`` **separate** draws estimate its probability,
the one-sided Clopper-Pearson lower bound at level ``alpha`` gives ``pA``; abstain (label -1,
radius 0) if ``pA < 1/2``, else the certified l2 radius is ``sigma * Phi^-1(pA)``.

This is the small engine the denoised-smoothing defenses use; it follows the certify contract of
``docs/DEVELOPING.md`` (``Certificate`` fields) so the shared ``bbdefense.certify.Smooth`` can take
over once both branches are merged (it needs a pre-processor hook applied *after* the noise).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from scipy.stats import beta, norm
from torch import Tensor

from ...errors import InputError
from ...models import BlackBox
from ...utils import make_generator

Preprocess = Callable[[Tensor], Tensor]


@dataclass
class Certificate:
    """Cohen certificate of one input (``label == -1`` means abstain; radius 0 then)."""

    label: int
    pA_lower: float
    radius: dict[str, float]
    counts: list[int]
    n0: int
    n: int
    abstain: bool
    approximate: bool = False
    queries: int = 0
    extra: dict[str, float] = field(default_factory=dict)


def clopper_pearson_lower(k: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) lower confidence bound of a binomial proportion (``proportion_confint(alpha=2 alpha)``)."""
    return 0.0 if k == 0 else float(beta.ppf(alpha, k, n - k + 1))


def _counts(bb: BlackBox, pre: Preprocess | None, x: Tensor, num: int, sigma: Tensor, batch_size: int,
            g: torch.Generator) -> Tensor:
    counts = torch.zeros(bb.num_classes, dtype=torch.long)
    left = num
    while left > 0:
        m = min(batch_size, left)
        xb = x.unsqueeze(0).expand(m, *x.shape)
        noisy = xb + sigma * torch.randn(xb.shape, generator=g, device=g.device).to(x.device)
        with torch.no_grad():
            inp = pre(noisy) if pre is not None else noisy
        labels = bb.predict_label(inp.clamp(0, 1).contiguous())
        counts += torch.bincount(labels.cpu(), minlength=bb.num_classes)
        left -= m
    return counts


def certify(bb: BlackBox, x: Tensor, *, sigma: float, pre: Preprocess | None = None, n0: int = 100,
            n: int = 10_000, alpha: float = 0.001, batch_size: int = 1000, seed: int | None = 0,
            channel_scale: Tensor | None = None) -> list[Certificate]:
    """Certify each image of ``x`` ``(N, C, H, W)`` for ``g`` above; returns one :class:`Certificate` each.

    ``channel_scale`` ``(C,)`` makes the noise std ``sigma * channel_scale[c]`` per channel (IRS-Net:
    noise of std sigma on the *normalised* image is pixel noise of std ``sigma * std_c``); the
    certified l2 radius in pixel space is then ``sigma * min_c(channel_scale) * Phi^-1(pA)`` (the
    Mahalanobis ball of an anisotropic Gaussian contains this Euclidean ball).
    ``pre`` maps noisy images ``(M, C, H, W)`` (unclipped) to images the black box accepts; its output
    is clipped to [0, 1]. Queries are charged on ``bb`` (``n0 + n`` per image, in ``Certificate.queries``).
    """
    if not sigma > 0:
        raise InputError(f"sigma must be > 0, got {sigma}")
    if n0 < 1 or n < 1:
        raise InputError(f"n0 and n must be >= 1, got n0={n0}, n={n}")
    if not 0 < alpha < 1:
        raise InputError(f"alpha must be in (0, 1), got {alpha}")
    if x.dim() != 4:
        raise InputError(f"expected images of shape (N, C, H, W), got shape {tuple(x.shape)}")
    scale = torch.ones(x.shape[1]) if channel_scale is None else channel_scale.detach().flatten().float().cpu()
    if scale.numel() != x.shape[1] or not bool((scale > 0).all()):
        raise InputError(f"channel_scale must hold {x.shape[1]} positive values, got {scale.tolist()}")
    sig = (sigma * scale).view(-1, 1, 1).to(x.device)
    sig_min = float(sigma * scale.min())
    g = make_generator(seed)
    out = []
    for i in range(x.shape[0]):
        q0 = bb.stats.queries
        c0 = _counts(bb, pre, x[i], n0, sig, batch_size, g)
        top = int(c0.argmax())
        c = _counts(bb, pre, x[i], n, sig, batch_size, g)
        pa = clopper_pearson_lower(int(c[top]), n, alpha)
        abstain = pa < 0.5
        r = 0.0 if abstain else float(sig_min * norm.ppf(pa))
        d = x[i].numel()
        out.append(Certificate(-1 if abstain else top, pa, {"l2": r, "l1": r, "linf": r / d ** 0.5}, c.tolist(), n0, n,
                               abstain, queries=bb.stats.queries - q0))
    return out


def certified_accuracy(certs: list[Certificate], y: Tensor, radii: tuple[float, ...]) -> dict[float, float]:
    """``mean(label == y and radius_l2 >= r)`` per radius (Cohen ``analyze.py``; abstentions count as wrong)."""
    if len(certs) != len(y):
        raise InputError(f"got {len(certs)} certificates for {len(y)} labels")
    n = max(len(certs), 1)
    return {r: sum(1 for c, t in zip(certs, y.tolist()) if c.label == t and c.radius["l2"] >= r) / n for r in radii}
