"""DUCD as an estimator (Li et al., "Privacy-preserving Universal Adversarial Defense for Black-box
Models", arXiv 2408.10647): :class:`DUCD` wraps :func:`.distill.distill` (step 1: a white-box surrogate
distilled from the black box under a hard query budget) and :func:`.defense.noise_finetune` (step 2:
noise-augmented fine-tuning on the transfer set labelled by the target's own answers, no new query),
then smooths the fine-tuned surrogate and certifies it with Algorithm 3 (:class:`.defense.CertifiedClassifier`'s
rules on Cohen's counts). Certification queries go to the surrogate, never to the target.

Shapes: data ``(N, C, H, W)`` in [0, 1]; certificates one per image.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ...certify import Certificate, Noise, Smooth, make_noise
from ...data import ImageDataset
from ...errors import InputError
from ...events import EventCallback
from ...models import BlackBox
from ..base import CERTIFIED, CertifiedDefense, load_weights
from .defense import CertifiedClassifier, noise_finetune
from .distill import AUGMENTS, DistillConfig, TransferSet, build_surrogate, distill


@CERTIFIED.register("ducd")
class DUCD(CertifiedDefense):
    """Distil, noise-fine-tune, smooth and certify a surrogate of a black box (DUCD, Algorithm 3).

    Args:
        budget: queries the distillation may spend (``None``: each distillation image once).
        surrogate: zoo classifier of the surrogate; ``loss``, ``epochs``, ``batch_size``, ``lr``,
            ``weight_decay``, ``augment``, ``max_shift``, ``noise_std``, ``query_batch``, ``prob_floor``:
            :class:`~.distill.DistillConfig` (Eq. 6 L1 on logits by default).
        noise, sigma, noise_params: the smoothing noise (Table IV: Laplace for l1, Gaussian for l2/linf);
            ``sigma`` is the per-coordinate std in [0, 1] pixel space.
        finetune_epochs, finetune_lr, finetune_batch_size: noise fine-tuning (Adam).
        zeta, iota: Algorithm 3's abstain and certification thresholds (defaults reduce to Cohen's rule).
        seed: distillation sampling, surrogate init and fine-tuning.

    Fitted attributes: ``surrogate_`` (distilled), ``base_`` (fine-tuned, the smoothed model),
    ``transfer_`` (the queried images and answers, not saved), ``transfer_size_`` (the target queries it cost),
    ``distill_`` (:class:`~.distill.DistillResult` as a dict; empty when a surrogate was reused), ``queries_``
    (target queries of this :meth:`fit`: 0 with a reused ``transfer``).
    """

    name = "ducd"

    def __init__(self, *, budget: int | None = None, surrogate: str = "smallcnn", loss: str = "auto",
                 epochs: int = 20, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0,
                 augment: Sequence[str] = AUGMENTS, max_shift: int = 2, noise_std: float = 0.1,
                 query_batch: int = 500, prob_floor: float = 1e-6, noise: str = "gaussian", sigma: float = 0.25,
                 noise_params: dict[str, Any] | None = None, finetune_epochs: int = 3, finetune_lr: float = 1e-3,
                 finetune_batch_size: int = 64, zeta: float = 1.0, iota: float = 0.5, seed: int = 0) -> None:
        self.budget, self.surrogate, self.loss = budget, surrogate, loss
        self.epochs, self.batch_size, self.lr, self.weight_decay = epochs, batch_size, lr, weight_decay
        self.augment = tuple(augment)
        self.max_shift, self.noise_std = max_shift, noise_std
        self.query_batch, self.prob_floor = query_batch, prob_floor
        self.noise, self.sigma = noise, sigma
        self.noise_params = dict(noise_params) if noise_params else None
        self.finetune_epochs, self.finetune_lr = finetune_epochs, finetune_lr
        self.finetune_batch_size = finetune_batch_size
        self.zeta, self.iota, self.seed = zeta, iota, seed
        self.distill_config().check()
        self.default_noise()  # checks noise, sigma and its params
        if not 0 < zeta <= 1 or not 0 <= iota < 1:
            raise InputError(f"zeta must be in (0, 1] and iota in [0, 1), got zeta={zeta}, iota={iota}")
        if finetune_epochs < 1 or finetune_batch_size < 1 or not finetune_lr > 0:
            raise InputError(f"finetune_epochs and finetune_batch_size must be >= 1 and finetune_lr > 0, got "
                             f"{finetune_epochs}, {finetune_batch_size}, {finetune_lr}")
        self._reset()
        self.surrogate_: nn.Module | None = None
        self.base_: nn.Module | None = None
        self.transfer_: TransferSet | None = None
        self.distill_: dict[str, Any] = {}
        self.transfer_size_ = 0
        self._shape: dict[str, Any] = {}

    def distill_config(self) -> DistillConfig:
        """The :class:`~.distill.DistillConfig` of these hyperparameters."""
        return DistillConfig(budget=self.budget, loss=self.loss, epochs=self.epochs,  # type: ignore[arg-type]
                             batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                             augment=self.augment, max_shift=self.max_shift, noise_std=self.noise_std,
                             query_batch=self.query_batch, prob_floor=self.prob_floor, seed=self.seed)

    def default_noise(self) -> Noise:
        """The noise the surrogate is fine-tuned for and smoothed with."""
        return make_noise(self.noise, sigma=self.sigma, **(self.noise_params or {}))

    def fit(self, blackbox: BlackBox, data: ImageDataset, *, on_event: EventCallback | None = None,
            split_seed: int | None = None, transfer: TransferSet | None = None,
            surrogate: nn.Module | None = None) -> DUCD:
        """Distil ``blackbox`` on ``data`` (the defender's images; labels unused), then fine-tune with noise.

        ``transfer``: a transfer set collected before (e.g. by a fit with another noise): no query is made.
        ``surrogate``: an already distilled surrogate to reuse with ``transfer`` (skips distillation).
        ``queries_`` is the increase of ``blackbox.stats.queries`` during this call.
        """
        self._check_data(data, "DUCD.fit")
        if not isinstance(blackbox, BlackBox):
            raise InputError(f"DUCD.fit needs a BlackBox target, got {type(blackbox).__name__}")
        self._reset()
        q0 = blackbox.stats.queries
        shape = {"num_classes": blackbox.num_classes, "input_shape": list(blackbox.input_shape),
                 "mean": list(data.mean), "std": list(data.std)}
        if surrogate is None:
            surrogate = build_surrogate(self.surrogate, num_classes=blackbox.num_classes,
                                        input_shape=data.input_shape, mean=data.mean, std=data.std, seed=self.seed)
            res, transfer = distill(blackbox, surrogate, data, self.distill_config(), transfer=transfer,
                                    on_event=on_event)
            self.distill_ = res.to_dict()
        elif transfer is None:
            raise InputError("DUCD.fit: a distilled surrogate= is reused only with the transfer= it was trained on")
        self.transfer_size_ = len(transfer)
        labels = transfer.out.long() if transfer.output == "label" else transfer.out.argmax(1)
        ft = ImageDataset("transfer", transfer.x, labels, list(data.classes), data.mean, data.std)
        base = noise_finetune(surrogate, ft, noise=self.noise, sigma=self.sigma, noise_params=self.noise_params,
                              epochs=self.finetune_epochs, lr=self.finetune_lr, batch_size=self.finetune_batch_size,
                              seed=self.seed, on_event=on_event)
        self.surrogate_, self.base_, self.transfer_, self._shape = surrogate.eval(), base, transfer, shape
        return self._fitted(blackbox, data, q0, split_seed)

    def base_blackbox(self) -> BlackBox:
        """The fine-tuned surrogate as a fresh local :class:`BlackBox` (where certification queries go)."""
        self._check_fitted("base_blackbox")
        return BlackBox.from_module(self.base_, input_shape=tuple(self._shape["input_shape"]),  # type: ignore[arg-type]
                                    num_classes=int(self._shape["num_classes"]), name="ducd-surrogate")

    def smoothed(self, noise: Noise | None = None, *, blackbox: BlackBox | None = None) -> Smooth:
        """Cohen's smoothing of the fine-tuned surrogate (``blackbox`` is ignored: DUCD never queries the
        target after :meth:`fit`). :meth:`certify` adds Algorithm 3's abstentions on top."""
        self._check_fitted("smoothed")
        return Smooth(self.base_blackbox(), noise if noise is not None else self.default_noise())

    def certify(self, x: Tensor, *, n0: int = 100, n: int = 10_000, alpha: float = 0.001, batch_size: int = 1000,
                seed: int = 0, indices: Sequence[int] | None = None, on_event: EventCallback | None = None,
                blackbox: BlackBox | None = None, noise: Noise | None = None) -> list[Certificate]:
        """Algorithm 3: Cohen CERTIFY on the smoothed surrogate, then the ``zeta`` / ``iota`` abstentions."""
        self._check_fitted("certify")
        smooth = self.smoothed(noise)
        rules = CertifiedClassifier(smooth.model, smooth.noise, zeta=self.zeta, iota=self.iota)
        certs = smooth.certify(x, n0=n0, n=n, alpha=alpha, batch_size=batch_size, seed=seed, indices=indices,
                               on_event=on_event)
        return [c if c.abstain or rules.algorithm3_passes(c.counts, c.label) else
                dataclasses.replace(c, label=-1, abstain=True, radius=dict.fromkeys(c.radius, 0.0)) for c in certs]

    # ------------------------------------------------------------------ persistence
    def _arch_kwargs(self) -> dict[str, Any]:
        c, h, _ = self._shape["input_shape"]
        return {"num_classes": int(self._shape["num_classes"]), "in_channels": int(c), "image_size": int(h),
                "mean": list(self._shape["mean"]), "std": list(self._shape["std"])}

    def _modules(self) -> dict[str, tuple[nn.Module, str, dict[str, Any], str]]:
        kw = self._arch_kwargs()
        return {"surrogate": (self.surrogate_, self.surrogate, kw, "classifier"),  # type: ignore[dict-item]
                "base": (self.base_, self.surrogate, kw, "classifier")}  # type: ignore[dict-item]

    def _state(self) -> dict[str, Any]:
        return {**self._shape, "distill": self.distill_, "transfer_size": self.transfer_size_}

    def _restore(self, state: dict[str, Any], directory: Path) -> None:
        self._shape = {k: state[k] for k in ("num_classes", "input_shape", "mean", "std")}
        self.distill_ = dict(state.get("distill", {}))
        self.transfer_size_ = int(state.get("transfer_size", 0))
        mods = []
        for part in ("surrogate", "base"):
            m = build_surrogate(self.surrogate, num_classes=int(state["num_classes"]),
                                input_shape=tuple(state["input_shape"]), mean=state["mean"], std=state["std"])
            mods.append(load_weights(directory / part, m))
        self.surrogate_, self.base_ = mods


__all__ = ["DUCD"]
