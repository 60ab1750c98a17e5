"""ZO-AE-DS as an estimator (Zhang et al., "How to Robustify Black-Box ML Models? A Zeroth-Order
Optimization Perspective", ICLR 2022) with its baselines FO-DS, ZO-DS and FO-AE-DS (``variant=``).

:class:`ZOAEDS` wraps :func:`.train.pretrain_autoencoder` (AE variants: the d_z = 192 autoencoder on
the defender's clean images, no query) and :func:`.train.train_zo_ae_ds` (the denoiser, and encoder,
trained with the stability loss on the black box's pseudo-labels, gradients by RGE/CGE or, FO
variants, by back-propagation through a :class:`~bbdefense.models.WhiteBox`). The fitted smoothed
classifier is the **black box** behind the defender's pre-processor:
``g(x) = argmax_c P(f(clamp01(pre(x + delta))) = c)``, ``delta ~ N(0, sigma^2 I)`` in pixel space,
``pre = D`` (DS) or ``Dec(Enc(D(.)))`` (AE-DS); every noisy sample is one query on the black box.

Shapes: data ``(N, C, H, W)`` in [0, 1] (AE variants: ``(N, 1, 28, 28)``, the reference MNIST AE).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ...certify import Noise, Smooth, make_noise
from ...data import ImageDataset
from ...errors import InputError
from ...events import EventCallback
from ...models import BlackBox
from ...models.zoo.autoencoder import ConvAutoEncoder
from ...utils import seeded_init
from ..base import CERTIFIED, CertifiedDefense, load_weights
from .train import DenoisedPipeline, ZOAEDSConfig, autoencoder_192, denoiser_net, pretrain_autoencoder, train_zo_ae_ds

AE_SHAPE = (1, 28, 28)


@CERTIFIED.register("zo-ae-ds")
class ZOAEDS(CertifiedDefense):
    """Denoised smoothing of a black box trained with zeroth-order gradients (ZO-AE-DS and baselines).

    Args:
        variant: ``zo-ae-ds`` (default), ``zo-ds``, ``fo-ae-ds``, ``fo-ds`` (FO variants need a WhiteBox).
        estimator: ``rge`` (``q`` random directions) or ``cge`` (coordinate-wise, q = d_z; AE variants).
        q, mu, difference: the ZO estimate (:mod:`bbdefense.certified.zo.estimators`).
        sigma: noise std in pixel space (training and smoothing; the code's ``--noise_sd``).
        epochs, batch_size, lr, weight_decay, mse_weight, train_encoder, pretrain_epochs, finetune_lr,
            chunk, depth, width: :class:`~.train.ZOAEDSConfig` (DnCNN ``depth`` x ``width``).
        ae_epochs, ae_batch_size, ae_lr, ae_tries: :func:`~.train.pretrain_autoencoder` (AE variants).
        seed: every stochastic part (own generators).

    Fitted attributes: ``pipeline_`` (the pre-processor), ``queries_`` (black-box queries of :meth:`fit`),
    ``queries_per_step_``, ``history_``, ``ae_mse_`` (AE variants), ``blackbox_``.
    """

    name = "zo-ae-ds"

    def __init__(self, *, variant: str = "zo-ae-ds", estimator: str = "rge", q: int = 192, mu: float = 0.005,
                 difference: str = "central", sigma: float = 0.25, epochs: int = 5, batch_size: int = 50,
                 lr: float = 1e-3, weight_decay: float = 0.0, mse_weight: float = 0.0, train_encoder: bool = True,
                 pretrain_epochs: int = 0, finetune_lr: float = 1e-4, chunk: int | None = 20_000, depth: int = 5,
                 width: int = 16, ae_epochs: int = 20, ae_batch_size: int = 32, ae_lr: float = 1e-3,
                 ae_tries: int = 3, seed: int = 0) -> None:
        self.variant, self.estimator, self.q, self.mu, self.difference = variant, estimator, q, mu, difference
        self.sigma, self.epochs, self.batch_size = sigma, epochs, batch_size
        self.lr, self.weight_decay = lr, weight_decay
        self.mse_weight, self.train_encoder, self.pretrain_epochs = mse_weight, train_encoder, pretrain_epochs
        self.finetune_lr, self.chunk, self.depth, self.width = finetune_lr, chunk, depth, width
        self.ae_epochs, self.ae_batch_size, self.ae_lr, self.ae_tries = ae_epochs, ae_batch_size, ae_lr, ae_tries
        self.seed = seed
        self.config().check()
        if ae_epochs < 0 or ae_batch_size < 1 or not ae_lr > 0 or ae_tries < 1:
            raise InputError(f"ae_epochs must be >= 0, ae_batch_size and ae_tries >= 1, ae_lr > 0; got {ae_epochs}, "
                             f"{ae_batch_size}, {ae_tries}, {ae_lr}")
        self._reset()
        self.pipeline_: DenoisedPipeline | None = None
        self.queries_per_step_ = 0
        self.history_: list[dict[str, float]] = []
        self.ae_mse_: float | None = None
        self._shape: dict[str, Any] = {}

    @property
    def uses_ae(self) -> bool:
        return self.variant.endswith("ae-ds")

    @property
    def label(self) -> str:
        """The variant's row label (e.g. ``ZO-AE-DS (RGE, q=20)``)."""
        return self.config().label

    def config(self) -> ZOAEDSConfig:
        """The :class:`~.train.ZOAEDSConfig` of these hyperparameters."""
        return ZOAEDSConfig(variant=self.variant, zo_method=self.estimator, q=self.q,  # type: ignore[arg-type]
                            mu=self.mu, difference=self.difference, sigma=self.sigma,  # type: ignore[arg-type]
                            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                            weight_decay=self.weight_decay, mse_weight=self.mse_weight,
                            train_encoder=self.train_encoder, pretrain_epochs=self.pretrain_epochs,
                            finetune_lr=self.finetune_lr, chunk=self.chunk, depth=self.depth, width=self.width,
                            seed=self.seed)

    def fit(self, blackbox: BlackBox, data: ImageDataset, *, on_event: EventCallback | None = None,
            split_seed: int | None = None, ae: ConvAutoEncoder | None = None) -> ZOAEDS:
        """Train the pre-processor against ``blackbox`` on ``data`` (labels unused: pseudo-labels from
        ``blackbox``). ``ae``: a pre-trained autoencoder to start from (AE variants; copied is the caller's
        business: its encoder is trained in place); default: pre-trained here on ``data``, no query."""
        self._check_data(data, "ZOAEDS.fit")
        if self.uses_ae and tuple(data.input_shape) != AE_SHAPE:
            raise InputError(f"the AE variants ship the MNIST d_z=192 autoencoder only, for images of shape "
                             f"{AE_SHAPE}; got {tuple(data.input_shape)}")
        self._reset()
        q0 = blackbox.stats.queries
        self.ae_mse_ = None
        if self.uses_ae and ae is None:
            ae, self.ae_mse_ = pretrain_autoencoder(data, epochs=self.ae_epochs, batch_size=self.ae_batch_size,
                                                    lr=self.ae_lr, seed=self.seed, tries=self.ae_tries)
        res = train_zo_ae_ds(blackbox, data, self.config(), ae=ae if self.uses_ae else None, on_event=on_event)
        self.pipeline_ = res.pipeline
        self.queries_per_step_, self.history_ = res.queries_per_step, list(res.history)
        self._shape = {"num_classes": blackbox.num_classes, "input_shape": list(blackbox.input_shape)}
        return self._fitted(blackbox, data, q0, split_seed)

    def smoothed(self, noise: Noise | None = None, *, blackbox: BlackBox | None = None) -> Smooth:
        """Denoised smoothing of the black box (``blackbox``, default the fitted one) with ``pre`` the
        fitted pipeline; ``noise`` defaults to Gaussian of std ``sigma``."""
        self._check_fitted("smoothed")
        bb = self._target(blackbox, "smoothed")
        return Smooth(bb, noise if noise is not None else make_noise("gaussian", sigma=self.sigma),
                      pre=self.pipeline_)

    # ------------------------------------------------------------------ persistence
    def _build_pipeline(self, channels: int) -> DenoisedPipeline:
        with seeded_init(self.seed):  # the weights are loaded over it: the init only has to be the same layout
            return DenoisedPipeline(denoiser_net(channels, self.depth, self.width),
                                    autoencoder_192() if self.uses_ae else None)

    def _modules(self) -> dict[str, tuple[nn.Module, str, dict[str, Any], str]]:
        kw = {"in_channels": int(self._shape["input_shape"][0]), "depth": self.depth, "width": self.width,
              "autoencoder": "mnist_ae_192" if self.uses_ae else None}
        return {"pipeline": (self.pipeline_, "zo-ae-ds-pipeline", kw, "preprocessor")}  # type: ignore[dict-item]

    def _state(self) -> dict[str, Any]:
        return {**self._shape, "queries_per_step": self.queries_per_step_, "history": self.history_,
                "ae_mse": self.ae_mse_}

    def _restore(self, state: dict[str, Any], directory: Path) -> None:
        self._shape = {"num_classes": int(state["num_classes"]), "input_shape": list(state["input_shape"])}
        self.queries_per_step_ = int(state.get("queries_per_step", 0))
        self.history_ = list(state.get("history", []))
        self.ae_mse_ = state.get("ae_mse")
        pipe = self._build_pipeline(int(self._shape["input_shape"][0]))
        self.pipeline_ = load_weights(directory / "pipeline", pipe)  # type: ignore[assignment]


__all__ = ["ZOAEDS"]
