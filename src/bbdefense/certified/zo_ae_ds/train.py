"""ZO-AE-DS (Zhang et al., "How to Robustify Black-Box ML Models? A Zeroth-Order Optimization
Perspective", ICLR 2022) and its baselines FO-DS, ZO-DS, FO-AE-DS.

System (reference code damon-demon/Black-Box-Defense @ 68e749f, ``AE_DS_train.py``)::

    x -> x + delta (delta ~ N(0, sigma^2 I), pixel space) -> D_theta (DnCNN) -> Enc_phi -> z (d_z = 192)
      -> [Dec (frozen) -> f (black box)]

The decoder is frozen and treated as part of the black box: a query ``f(Dec(z))`` is charged on
the :class:`~bbdefense.models.BlackBox` (one per latent point). The objective is the *stability*
loss (Salman et al. 2020) with **pseudo-labels** ``y0 = argmax f(x)`` from the black box on clean
inputs (B queries per step)::

    min_{theta, phi}  E_delta CE(f(Dec(Enc(D(x + delta)))), y0)  [+ mse_weight * MSE(D(x + delta), x)]

The paper's Eq. 2 adds a denoising MSE term; the reference code trains the CE term only, so
``mse_weight = 0`` is the default (documented). The gradient w.r.t. z is estimated by RGE or CGE
(:mod:`bbdefense.certified.zo.estimators`) and back-propagated with the surrogate product of Eq. 8,
``mean_b <z_b, a_b>``, ``a = stop_grad(estimate)``.

Variants (``variant``):

* ``fo-ds``: ``CE(f(D(x + delta)), y0)`` with the true gradient (needs a :class:`WhiteBox`).
* ``zo-ds``: the same objective, RGE in image space (d = C H W).
* ``fo-ae-ds``: the ZO-AE-DS graph with the true gradient (needs a :class:`WhiteBox`).
* ``zo-ae-ds``: RGE (``q`` directions) or CGE (q = d_z) in the latent space.

Training from scratch, or pre-train + fine-tune (``pretrain_epochs`` epochs of denoising MSE,
then the stability loss at ``finetune_lr``). AE pre-training: :func:`pretrain_autoencoder`. Every
stage is a step function on :func:`bbdefense.training.fit`; the noise ``delta`` is drawn by
:class:`bbdefense.certify.Noise`; the DnCNN and the autoencoder are the zoo's.
Images entering the black box are clipped to [0, 1] (the oracle only accepts valid images);
the FO variants use a straight-through clip so that gradients pass as in the reference code.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...certify import make_noise
from ...data import ImageDataset
from ...errors import AccessError, InputError
from ...events import EventCallback
from ...models import BlackBox, WhiteBox
from ...models.zoo.autoencoder import ConvAutoEncoder, mnist_ae_192
from ...models.zoo.dncnn import DnCNN
from ...training.loop import Batch, OptimConfig, StepOutput, fit
from ...utils import make_generator, seeded_init
from ..zo.estimators import Difference, estimate, query_cost, surrogate_loss

VARIANTS: tuple[str, ...] = ("fo-ds", "zo-ds", "fo-ae-ds", "zo-ae-ds")
Variant = Literal["fo-ds", "zo-ds", "fo-ae-ds", "zo-ae-ds"]


@dataclass
class ZOAEDSConfig:
    """Hyperparameters (paper / reference defaults where they apply; demo-scale epochs).

    ``sigma`` is the noise **standard deviation** (the code's ``--noise_sd 0.25``; the paper's
    "sigma^2 = 0.25" is read as a typo, see docs/denoised-smoothing.md).
    """

    variant: Variant = "zo-ae-ds"
    task: Literal["classification", "reconstruction"] = "classification"
    zo_method: Literal["rge", "cge"] = "rge"
    q: int = 192
    mu: float = 0.005
    difference: Difference = "central"
    sigma: float = 0.25
    epochs: int = 5
    batch_size: int = 50
    lr: float = 1e-3
    weight_decay: float = 0.0
    mse_weight: float = 0.0
    train_encoder: bool = True
    pretrain_epochs: int = 0
    finetune_lr: float = 1e-4
    chunk: int | None = 20_000
    depth: int = 5
    width: int = 16
    seed: int = 0

    def check(self) -> None:
        if self.task not in ("classification", "reconstruction"):
            raise InputError(f"task must be 'classification' or 'reconstruction', got {self.task!r}")
        if self.variant not in VARIANTS:
            raise InputError(f"unknown variant {self.variant!r}; choose one of: {', '.join(VARIANTS)}")
        if self.zo_method not in ("rge", "cge"):
            raise InputError(f"zo_method must be 'rge' or 'cge', got {self.zo_method!r}")
        if self.variant == "zo-ds" and self.zo_method == "cge":
            raise InputError("zo-ds uses RGE only (CGE in image space costs 2*C*H*W queries per image per step)")
        for name in ("sigma", "lr", "mu"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.epochs < 0 or self.pretrain_epochs < 0:
            raise InputError(f"epochs must be >= 0, got epochs={self.epochs}, pretrain_epochs={self.pretrain_epochs}")
        if self.batch_size < 1 or self.q < 1:
            raise InputError(f"batch_size and q must be >= 1, got batch_size={self.batch_size}, q={self.q}")
        if self.mse_weight < 0:
            raise InputError(f"mse_weight must be >= 0, got {self.mse_weight}")

    @property
    def label(self) -> str:
        if self.variant.startswith("fo"):
            return self.variant.upper()
        if self.zo_method == "cge":
            return f"{self.variant.upper()} (CGE, q=d)"
        return f"{self.variant.upper()} (RGE, q={self.q})"


class _ClipST(torch.autograd.Function):
    """Clip to [0, 1] forward, identity backward (straight-through)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.clamp(0, 1)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> Tensor:
        return g


def clip_st(x: Tensor) -> Tensor:
    """Straight-through clip to [0, 1]."""
    return _ClipST.apply(x)


class DenoisedPipeline(nn.Module):
    """The defender's pre-processor: ``D`` (DS) or ``Dec(Enc(D(.)))`` (AE-DS), output clipped to [0, 1].

    Put in front of the black box for certification. Shape ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """

    def __init__(self, denoiser: nn.Module, ae: ConvAutoEncoder | None = None) -> None:
        super().__init__()
        self.denoiser, self.ae = denoiser, ae

    def forward(self, x: Tensor) -> Tensor:
        h = self.denoiser(x)
        if self.ae is not None:
            h = self.ae.decoder(self.ae.encoder(h))
        return h.clamp(0, 1)


@dataclass
class ZOAEDSResult:
    """A trained defense: the pipeline, the config and the black-box queries it took."""

    pipeline: DenoisedPipeline
    config: ZOAEDSConfig
    queries: int
    queries_per_step: int
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def _scores_loss(out: Tensor, y: Tensor, output: str) -> Tensor:
    """Per-sample CE from black-box scores (logits or probabilities)."""
    if output == "logits":
        return F.cross_entropy(out, y, reduction="none")
    return -torch.log(out.gather(1, y[:, None]).squeeze(1).clamp_min(1e-12))


def denoiser_net(in_channels: int, depth: int, width: int) -> DnCNN:
    """The DnCNN of ZO-AE-DS at CPU scale (zoo :class:`~bbdefense.models.zoo.dncnn.DnCNN`, ``depth`` convs of
    ``width`` features; identity at initialisation). ``(N, C, H, W)`` -> same."""
    return DnCNN(in_channels=in_channels, depth=depth, features=width)


def autoencoder_192() -> ConvAutoEncoder:
    """The ZO-AE-DS MNIST autoencoder (zoo ``mnist_ae_192``) with vector latents ``(N, 192)``."""
    return cast(ConvAutoEncoder, mnist_ae_192(flat_latent=True))  # the zoo's registry types factories as Module


def pretrain_autoencoder(data: ImageDataset, *, epochs: int = 20, batch_size: int = 32, lr: float = 1e-3,
                         seed: int = 0, tries: int = 3) -> tuple[ConvAutoEncoder, float]:
    """Train the MNIST d_z = 192 autoencoder (:func:`autoencoder_192`) on clean images with MSE (Adam,
    lr 1e-3, as the reference log).

    The reference design (3 and 12 channels, ReLU after the latent) sometimes collapses at
    initialisation (dead ReLUs, constant output). A run whose final MSE is not below the variance of
    the data (i.e. no better than the mean image) is re-initialised with seed ``seed + 1000 k``,
    at most ``tries`` times; the seed used is ``ae.seed``.

    Returns ``(ae, final MSE on data)``. Initialisation is seeded without touching the global RNG.
    """
    if tries < 1:
        raise InputError(f"tries must be >= 1, got {tries}")
    var = float(((data.x - data.x.mean(0)) ** 2).mean())
    for k in range(tries):
        s = seed + 1000 * k
        with seeded_init(s):
            ae = autoencoder_192()

        def step(batch: Batch, ae: ConvAutoEncoder = ae) -> Tensor:
            return F.mse_loss(ae(batch[0]), batch[0])

        fit(ae.parameters(), data.x, step, epochs=epochs, batch_size=batch_size, generator=make_generator(s),
            optim=OptimConfig("adam", lr=lr), modules=[ae], task="autoencoder")
        with torch.no_grad():
            mse = float(F.mse_loss(ae(data.x), data.x))
        ae.seed = s  # type: ignore[assignment]
        if mse < 0.9 * var:
            break
    return ae, mse


def train_zo_ae_ds(bb: BlackBox, data: ImageDataset, cfg: ZOAEDSConfig, *, ae: ConvAutoEncoder | None = None,
                   denoiser: nn.Module | None = None, on_event: EventCallback | None = None) -> ZOAEDSResult:
    """Train the denoiser (and encoder) of ``cfg.variant`` against ``bb`` on ``data`` (the defender's images).

    Args:
        bb: the target. ZO variants need scores (``output`` logits or probs); FO variants need a
            :class:`WhiteBox`. Every forward through it is counted on it.
        data: training images ``(N, C, H, W)``; their labels are **not** used (pseudo-labels from ``bb``).
        cfg: the configuration.
        ae: a pre-trained autoencoder with vector latents (AE variants, :func:`autoencoder_192`); its decoder
            is frozen, its encoder trained when ``cfg.train_encoder``. Required for AE variants.
        denoiser: an initial denoiser (default: :func:`denoiser_net` of ``cfg.depth`` x ``cfg.width``,
            identity at init).

    Returns:
        :class:`ZOAEDSResult` with the pipeline in eval mode and the exact query count.
    """
    cfg.check()
    is_ae, is_zo = cfg.variant.endswith("ae-ds"), cfg.variant.startswith("zo")
    if cfg.task == "reconstruction" and bb.output != "logits":
        raise AccessError(f"reconstruction needs the black box's raw outputs (output='logits'), got {bb.output!r}")
    if is_zo and not bb.reveals_scores:
        raise AccessError(f"{cfg.variant} needs scores from the black box; it reveals only {bb.output!r}")
    if not is_zo and not isinstance(bb, WhiteBox):
        raise AccessError(f"{cfg.variant} is first-order: it needs a WhiteBox, got {type(bb).__name__}")
    if is_ae and ae is None:
        raise InputError(f"{cfg.variant} needs a pre-trained autoencoder (ae=...)")
    c = data.x.shape[1]
    if denoiser is None:
        with seeded_init(cfg.seed):
            denoiser = denoiser_net(c, cfg.depth, cfg.width)
    den: nn.Module = denoiser
    ae_used = ae if is_ae else None
    if ae_used is not None:
        ae_used.decoder.eval()
        for p in ae_used.decoder.parameters():
            p.requires_grad_(False)
    nz = make_noise("gaussian", sigma=cfg.sigma)
    g = make_generator(cfg.seed)  # batch order and noise (shared, in that order)
    gz = make_generator(cfg.seed + 1)  # ZO directions
    t0, q_start = time.perf_counter(), bb.stats.queries

    # pre-training of the denoiser on MSE (no queries), then fine-tuning at finetune_lr
    if cfg.pretrain_epochs:
        def mse_step(batch: Batch) -> Tensor:
            x = batch[0]
            return F.mse_loss(den(x + nz.sample(x.shape, g)), x)

        fit(den.parameters(), data.x, mse_step, epochs=cfg.pretrain_epochs, batch_size=cfg.batch_size, generator=g,
            optim=OptimConfig("adam", lr=cfg.lr, weight_decay=cfg.weight_decay), modules=[den],
            task="zo-ae-ds:pretrain", on_event=on_event)
    lr = cfg.finetune_lr if cfg.pretrain_epochs else cfg.lr
    params = list(den.parameters())
    if ae_used is not None and cfg.train_encoder:
        params += list(ae_used.encoder.parameters())
    last = {"queries": 0}

    def step(batch: Batch) -> StepOutput:
        x = batch[0]
        q_step = bb.stats.queries
        with torch.no_grad():  # pseudo-labels (or pseudo-targets) on clean inputs: B queries
            y0 = bb.predict_label(x) if cfg.task == "classification" else bb.query(x).clone()
        h = den(x + nz.sample(x.shape, g))
        if is_zo:
            w = ae_used.encoder(h) if ae_used is not None else h.flatten(1)
            loss_fn = _latent_loss(bb, ae_used, y0, x.shape[1:], cfg.task)
            est = estimate(cfg.zo_method, loss_fn, w.detach(), q=cfg.q, mu=cfg.mu, difference=cfg.difference,
                           generator=gz, chunk=cfg.chunk)
            loss = surrogate_loss(w, est.grad)
            value = float(est.loss.mean()) if cfg.zo_method == "rge" or cfg.difference == "forward" else float("nan")
        else:
            img = ae_used.decoder(ae_used.encoder(h)) if ae_used is not None else clip_st(h)
            out = bb.logits(img)  # type: ignore[attr-defined]
            loss = F.cross_entropy(out, y0) if cfg.task == "classification" else F.mse_loss(out, y0)
            value = float(loss.detach())
        if cfg.mse_weight:
            loss = loss + cfg.mse_weight * F.mse_loss(h, x)
        last["queries"] = bb.stats.queries - q_step
        return StepOutput(loss, {"stab_loss": value * len(x)}, last["queries"])

    def modes(epoch: int) -> None:
        if ae_used is not None:
            ae_used.encoder.train(cfg.train_encoder)

    res = fit(params, data.x, step, epochs=cfg.epochs, batch_size=cfg.batch_size, generator=g,
              optim=OptimConfig("adam", lr=lr, weight_decay=cfg.weight_decay), modules=[den], before_epoch=modes,
              task="zo-ae-ds", on_event=on_event)
    pipe = DenoisedPipeline(den, ae_used).eval()
    return ZOAEDSResult(pipe, cfg, bb.stats.queries - q_start, last["queries"], res.steps,
                        time.perf_counter() - t0, res.history)


def _latent_loss(bb: BlackBox, ae: ConvAutoEncoder | None, y0: Tensor, shape: torch.Size,
                 task: str = "classification"):
    """``(B, P, d) -> (B, P)``: CE(f(Dec(z)), y0) (AE) or CE(f(clip(x)), y0) (image space), one query per point.

    For ``task="reconstruction"`` the loss is the mean squared distance to the black box's output on
    the clean input (the regression analogue of the stability loss, paper §5.3)."""
    def loss_fn(pts: Tensor) -> Tensor:
        b, p, d = pts.shape
        flat = pts.reshape(b * p, d)
        with torch.no_grad():
            img = ae.decoder(flat) if ae is not None else flat.view(b * p, *shape)
            out = bb.query(img.clamp(0, 1).contiguous())
        if task == "reconstruction":
            return ((out - y0.repeat_interleave(p, dim=0)) ** 2).flatten(1).mean(1).view(b, p)
        return _scores_loss(out, y0.repeat_interleave(p), bb.output).view(b, p)
    return loss_fn


def expected_queries_per_step(cfg: ZOAEDSConfig, *, batch: int, d: int) -> int:
    """Queries one training step charges: B pseudo-labels + the estimator's probes (ZO) or B forwards (FO)."""
    if cfg.variant.startswith("fo"):
        return 2 * batch
    return batch + query_cost(cfg.zo_method, batch=batch, d=d, q=cfg.q, difference=cfg.difference)
