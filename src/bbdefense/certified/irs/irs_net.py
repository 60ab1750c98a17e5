"""IRS-Net (Kumar & Narayan, "Improved Randomized Smoothing", IJCNN 2022) and the Salman et al. (2020)
MSE + stability denoiser used as its black-box baseline.

**IRS-Net** (Algorithm 1, Eq. 3; no public code exists, implemented from the paper): a UNet
``U_theta`` takes the *normalised* image plus Gaussian noise and outputs the image in the range the
classifier expects ([0, 1] for zoo classifiers, whose normalisation is their first layer)::

    x' = (x - mu_o) / sigma_o,   x_hat = U(x' + delta),  delta ~ N(0, sigma^2 I)
    L = lambda * CE(f(x_hat), y) + MAE(x, x_hat)            (lambda = 0.1, SGD lr 0.1, 20 epochs)

trained against **one** white-box surrogate ``f``, then placed in front of other, unseen black
boxes and certified with Cohen CERTIFY. Noise of std sigma on the normalised image is pixel noise
of std ``sigma * sigma_o`` per channel, so the certified l2 radius **in pixel space** is
``sigma * min(sigma_o) * Phi^-1(pA)``; we always report pixel-space radii (the paper's figures
do not say which space they use; see docs/denoised-smoothing.md).

**Salman et al.** (microsoft/denoised-smoothing @ 9500d0e, ``train_denoiser.py``): a denoiser on
pixel-space noisy images trained with ``MSE(D(x + delta), x) + CE(f(D(x + delta)), argmax f(x))``
(the "MSE + stability" objective, surrogate ``f``). Same UNet here so that only the method differs.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...certify import make_noise
from ...data import ImageDataset
from ...errors import InputError
from ...events import EventCallback
from ...models import WhiteBox
from ...models.zoo.unet import UNet
from ...training.loop import Batch, OptimConfig, StepOutput, fit
from ...utils import make_generator, seeded_init

METHODS: tuple[str, ...] = ("irs", "salman")


class IRSDenoiser(nn.Module):
    """The defender's pre-processor for both methods, taking **pixel-space** (noisy) images.

    ``method="irs"``: ``U((x - mean) / std)``; ``method="salman"``: ``U(x)``. Output in [0, 1].
    ``noise_scale`` ``(C,)`` is the per-channel factor from the method's sigma to pixel-space noise
    std (``std`` for IRS-Net, ones for Salman).

    Shape: ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """

    mean: Tensor  # registered buffers (1, C, 1, 1)
    std: Tensor

    def __init__(self, unet: nn.Module, *, method: str, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if method not in METHODS:
            raise InputError(f"unknown denoiser method {method!r}; choose one of: {', '.join(METHODS)}")
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise InputError(f"mean and std must have the same length and std > 0, got {list(mean)}, {list(std)}")
        self.unet, self.method = unet, method
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def noise_scale(self) -> Tensor:
        return self.std.flatten() if self.method == "irs" else torch.ones_like(self.std.flatten())

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std if self.method == "irs" else x

    def forward(self, x: Tensor) -> Tensor:
        return self.unet(self.normalize(x))


@dataclass
class IRSConfig:
    """Hyperparameters. Paper (§IV): SGD lr 0.1, lambda 0.1, 20 epochs; sigma is the std of the noise
    on the *normalised* image for IRS-Net, on the pixel image for Salman."""

    method: Literal["irs", "salman"] = "irs"
    sigma: float = 0.5
    lam: float = 0.1
    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.1
    optimizer: Literal["sgd", "adam"] = "sgd"
    width: int = 16
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    seed: int = 0

    def check(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown denoiser method {self.method!r}; choose one of: {', '.join(METHODS)}")
        for name in ("sigma", "lr"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.lam < 0:
            raise InputError(f"lam must be >= 0, got {self.lam}")
        if self.epochs < 1 or self.batch_size < 1:
            raise InputError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if self.optimizer not in ("sgd", "adam"):
            raise InputError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")


@dataclass
class IRSResult:
    """A trained IRS denoiser, its config, the surrogate forwards it took, wall seconds and per-epoch history
    (:class:`~bbdefense.certified.IRSNet` keeps them as ``denoiser_``, ``queries_``, ``history_``)."""

    denoiser: IRSDenoiser
    config: IRSConfig
    surrogate_queries: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def rescaled_loss(logits: Tensor, y: Tensor, x: Tensor, x_hat: Tensor, lam: float) -> Tensor:
    """Eq. 3: ``lam * CE(logits, y) + MAE(x, x_hat)`` (scalar)."""
    return lam * F.cross_entropy(logits, y) + F.l1_loss(x_hat, x)


def stability_mse_loss(logits: Tensor, y0: Tensor, x: Tensor, x_hat: Tensor) -> Tensor:
    """Salman et al.: ``MSE(x_hat, x) + CE(logits, argmax f(x))`` (scalar)."""
    return F.mse_loss(x_hat, x) + F.cross_entropy(logits, y0)


def train_denoiser(surrogate: WhiteBox, data: ImageDataset, cfg: IRSConfig, *,
                   on_event: EventCallback | None = None) -> IRSResult:
    """Train an IRS-Net (``cfg.method="irs"``) or Salman (``"salman"``) denoiser against ``surrogate``.

    Args:
        surrogate: the one white-box classifier used in training (forwards counted on it).
        data: the defender's images ``(N, C, H, W)`` and labels ``(N,)`` (IRS-Net uses true labels, Eq. 3;
            Salman uses the surrogate's labels on clean images).
        cfg: hyperparameters; ``mean``/``std`` default to the dataset's.

    Returns:
        :class:`IRSResult` with the denoiser in eval mode.
    """
    cfg.check()
    if not isinstance(surrogate, WhiteBox):
        raise InputError(f"the surrogate must be a WhiteBox, got {type(surrogate).__name__}")
    mean = cfg.mean if cfg.mean is not None else tuple(data.mean)
    std = cfg.std if cfg.std is not None else tuple(data.std)
    c = data.x.shape[1]
    with seeded_init(cfg.seed):
        den = IRSDenoiser(irs_unet(c, cfg.width), method=cfg.method, mean=mean, std=std)
    surrogate.module.eval()
    for p in surrogate.module.parameters():
        p.requires_grad_(False)
    nz = make_noise("gaussian", sigma=cfg.sigma)
    g = make_generator(cfg.seed)

    def step(batch: Batch) -> StepOutput:
        x, y = batch
        q = surrogate.stats.queries
        delta = nz.sample(x.shape, g)
        if cfg.method == "irs":
            x_hat = den.unet(den.normalize(x) + delta)  # noise on the normalised image
            loss = rescaled_loss(surrogate.logits(x_hat), y, x, x_hat, cfg.lam)
        else:
            with torch.no_grad():
                y0 = surrogate.predict_label(x)
            x_hat = den.unet(x + delta)
            loss = stability_mse_loss(surrogate.logits(x_hat), y0, x, x_hat)
        return StepOutput(loss, {"loss": float(loss.detach()) * len(x)}, surrogate.stats.queries - q)

    q0 = surrogate.stats.queries
    try:
        res = fit(den.parameters(), data, step, epochs=cfg.epochs, batch_size=cfg.batch_size, generator=g,
                  optim=OptimConfig(cfg.optimizer, lr=cfg.lr, momentum=0.9), modules=[den],
                  task=f"train-{cfg.method}", on_event=on_event)
    finally:
        for p in surrogate.module.parameters():
            p.requires_grad_(True)
    history = [{"epoch": r["epoch"], "loss": r["loss"]} for r in res.history]
    return IRSResult(den, cfg, surrogate.stats.queries - q0, res.seconds, history)


def irs_unet(in_channels: int, width: int) -> nn.Module:
    """The CPU-scale UNet of IRS-Net and its Salman baseline: the zoo's Ronneberger UNet with two
    poolings (28 -> 14 -> 7 on MNIST), first level ``width`` channels, biased convs + BN, sigmoid output
    (the layout the documented IRS-Net figures were measured with). ``(N, C, H, W)`` -> same, in (0, 1)."""
    return UNet(in_channels=in_channels, base_width=width, depth=2, conv_bias=True, skip_first=False,
                out_activation="sigmoid")


def noisy_input(den: IRSDenoiser | None, sigma: float, x: Tensor, generator: torch.Generator) -> Tensor:
    """``x`` plus one draw of the method's noise in pixel space: channel c gets ``N(0, (sigma s_c)^2)``, ``s =
    den.noise_scale`` (``std`` for IRS-Net, ones for Salman and for no denoiser). Same distribution as the noise
    of ``Smooth(make_noise("gaussian", sigma), scale=s)``; drawn as unit Gaussian noise (a
    :class:`~bbdefense.certify.Noise`) times the per-channel std ``sigma * s_c``, the product order of the
    documented Table I and Table V runs (so those figures are bit-identical; tests/certified/test_noise_sites.py).

    Shape: ``(N, C, H, W)`` -> same (on ``x``'s device; ``generator`` may live on the CPU).
    """
    scale = den.noise_scale if den is not None else torch.ones(x.shape[1])
    eps = make_noise("gaussian", sigma=1.0).sample(x.shape, generator, scale=sigma * scale.cpu())
    return x + eps.to(x.device)


def pixel_sigma(den: IRSDenoiser, sigma: float) -> float:
    """The smallest per-channel pixel-space noise std that ``sigma`` means for ``den`` (the radius scale)."""
    return float(sigma * den.noise_scale.min())
