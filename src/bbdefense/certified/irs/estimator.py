"""IRS-Net as an estimator (Kumar & Narayan, "Improved Randomized Smoothing", IJCNN 2022), with the
Salman et al. (2020) MSE + stability denoiser as ``method="salman"``.

:class:`IRSNet` wraps :func:`.irs_net.train_denoiser`: a UNet trained against **one** white-box
surrogate (the ``blackbox`` given to :meth:`IRSNet.fit`, a :class:`~bbdefense.models.WhiteBox`), then
put in front of any black box (``smoothed(blackbox=target)``; default: the surrogate itself) and
certified. IRS-Net's noise ``delta ~ N(0, sigma^2 I)`` is on the *normalised* image
``(x - mean) / std``, i.e. pixel noise of std ``sigma * std_c`` per channel, so the smoothed classifier
is ``Smooth(blackbox, gaussian(sigma), pre=denoiser, scale=std)`` and its radii are in pixel space
(``sigma * min(std) * Phi^-1(pA)`` in l2). Salman's noise is on the pixel image (no scale).

Shapes: data ``(N, C, H, W)`` in [0, 1] with labels (IRS-Net's Eq. 3 uses the true labels), H, W
divisible by 4.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ...certify import Noise, Smooth, make_noise
from ...data import ImageDataset
from ...events import EventCallback
from ...models import BlackBox
from ..base import CERTIFIED, CertifiedDefense, load_weights
from .irs_net import IRSConfig, IRSDenoiser, irs_unet, pixel_sigma, train_denoiser


@CERTIFIED.register("irs-net")
class IRSNet(CertifiedDefense):
    """A UNet denoiser trained against one surrogate, smoothing unseen black boxes (IRS-Net / Salman).

    Args:
        method: ``irs`` (rescaled loss ``lam * CE + MAE``, noise on the normalised image) or ``salman``
            (MSE + stability on pixel noise).
        sigma: noise std in the method's space (IRS-Net: normalised image; Salman: pixels).
        lam, epochs, batch_size, lr, optimizer, width: :class:`~.irs_net.IRSConfig` (paper: SGD lr 0.1,
            lambda 0.1, 20 epochs).
        mean, std: the normalisation of the image space (default: the training data's).
        seed: UNet init, shuffling and noise.

    Fitted attributes: ``denoiser_`` (:class:`~.irs_net.IRSDenoiser`), ``queries_`` (forwards on the
    surrogate; no query reaches a target during fit), ``history_``, ``pixel_sigma_``, ``blackbox_`` (the surrogate).
    """

    name = "irs-net"

    def __init__(self, *, method: str = "irs", sigma: float = 0.5, lam: float = 0.1, epochs: int = 20,
                 batch_size: int = 64, lr: float = 0.1, optimizer: str = "sgd", width: int = 16,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None, seed: int = 0) -> None:
        self.method, self.sigma, self.lam, self.epochs, self.batch_size = method, sigma, lam, epochs, batch_size
        self.lr, self.optimizer, self.width, self.seed = lr, optimizer, width, seed
        self.mean = None if mean is None else tuple(float(v) for v in mean)
        self.std = None if std is None else tuple(float(v) for v in std)
        self.config().check()
        self._reset()
        self.denoiser_: IRSDenoiser | None = None
        self.history_: list[dict[str, float]] = []
        self._shape: dict[str, Any] = {}

    def config(self) -> IRSConfig:
        """The :class:`~.irs_net.IRSConfig` of these hyperparameters."""
        return IRSConfig(method=self.method, sigma=self.sigma, lam=self.lam, epochs=self.epochs,  # type: ignore[arg-type]
                         batch_size=self.batch_size, lr=self.lr, optimizer=self.optimizer,  # type: ignore[arg-type]
                         width=self.width, mean=self.mean, std=self.std, seed=self.seed)

    @property
    def pixel_sigma_(self) -> float:
        """The smallest per-channel pixel-space noise std (the l2 radius scale)."""
        self._check_fitted("pixel_sigma_")
        return pixel_sigma(self.denoiser_, self.sigma)  # type: ignore[arg-type]

    def fit(self, blackbox: BlackBox, data: ImageDataset, *, on_event: EventCallback | None = None,
            split_seed: int | None = None) -> IRSNet:
        """Train the denoiser against the white-box surrogate ``blackbox`` on ``data`` (images and labels)."""
        self._check_data(data, "IRSNet.fit")
        self._reset()
        q0 = blackbox.stats.queries
        res = train_denoiser(blackbox, data, self.config(), on_event=on_event)  # type: ignore[arg-type]
        self.denoiser_, self.history_ = res.denoiser, list(res.history)
        self._shape = {"num_classes": blackbox.num_classes, "input_shape": list(blackbox.input_shape),
                       "mean": list(self.mean if self.mean is not None else data.mean),
                       "std": list(self.std if self.std is not None else data.std)}
        return self._fitted(blackbox, data, q0, split_seed)

    def smoothed(self, noise: Noise | None = None, *, blackbox: BlackBox | None = None) -> Smooth:
        """Denoised smoothing of ``blackbox`` (default: the surrogate it was fitted on) with ``pre`` the
        denoiser; Gaussian noise of std ``sigma`` (default) scaled per channel by ``std`` (IRS-Net)."""
        self._check_fitted("smoothed")
        bb = self._target(blackbox, "smoothed")
        den: IRSDenoiser = self.denoiser_  # type: ignore[assignment]
        scale = den.noise_scale if self.method == "irs" else None
        return Smooth(bb, noise if noise is not None else make_noise("gaussian", sigma=self.sigma), pre=den,
                      scale=scale)

    # ------------------------------------------------------------------ persistence
    def _build(self, state: dict[str, Any]) -> IRSDenoiser:
        c = int(state["input_shape"][0])
        return IRSDenoiser(irs_unet(c, self.width), method=self.method, mean=state["mean"],
                           std=state["std"])

    def _modules(self) -> dict[str, tuple[nn.Module, str, dict[str, Any], str]]:
        kw = {"in_channels": int(self._shape["input_shape"][0]), "width": self.width, "method": self.method,
              "mean": self._shape["mean"], "std": self._shape["std"]}
        return {"denoiser": (self.denoiser_, "irs-unet", kw, "preprocessor")}  # type: ignore[dict-item]

    def _state(self) -> dict[str, Any]:
        return {**self._shape, "history": self.history_}

    def _restore(self, state: dict[str, Any], directory: Path) -> None:
        self._shape = {k: state[k] for k in ("num_classes", "input_shape", "mean", "std")}
        self.history_ = list(state.get("history", []))
        self.denoiser_ = load_weights(directory / "denoiser", self._build(state))  # type: ignore[assignment]


__all__ = ["IRSNet"]
