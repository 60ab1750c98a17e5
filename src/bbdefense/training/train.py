"""Training classifiers of the zoo: plain, Gaussian-noise augmentation, PGD adversarial training.

Modes (``TRAIN_MODES``, a registry other parts extend):

* ``plain``: cross-entropy on clean images.
* ``gaussian``: inputs ``x + N(0, sigma^2)`` (drawn by :class:`bbdefense.certify.Noise`) in [0, 1] pixel space,
  *before* the model's normalisation layer (Cohen et al. 2019 ``train.py``); needed for randomized smoothing at sigma.
* ``noise``: inputs ``x + eps`` with ``eps`` from a :data:`bbdefense.certify.NOISES` family
  (``noise``, ``sigma`` = per-coordinate std, ``noise_params`` e.g. ``{"beta": 1.5}``), in [0, 1]
  pixel space like ``gaussian``; for smoothing with that noise (DUCD noise selection, Table III).
* ``pgd``: Madry et al. (2018) adversarial training with linf PGD at ``eps`` (``steps`` steps,
  step size ``2.5 eps / steps``, random start).

Every mode is one step function (:func:`classifier_step`) on the loop of :mod:`bbdefense.training.loop`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import ImageDataset
from ..errors import InputError
from ..events import EventCallback, emit
from ..registry import Registry
from .loop import Batch, OptimConfig, StepFn, StepOutput, fit

# A mode maps (model, x, y, generator, config) -> the batch to train on.
AugmentFn = Callable[[nn.Module, Tensor, Tensor, torch.Generator, "TrainConfig"], Tensor]
TRAIN_MODES: Registry[AugmentFn] = Registry("training mode")


@dataclass
class TrainConfig:
    """Hyperparameters of :func:`train_classifier` (recorded in the checkpoint metadata)."""

    mode: str = "plain"
    epochs: int = 8
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    sigma: float = 0.25
    eps: float = 0.1
    pgd_steps: int = 7
    noise: str | None = None
    noise_params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def check(self) -> None:
        TRAIN_MODES[self.mode]  # raises UnknownNameError listing the modes
        if self.epochs < 1:
            raise InputError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise InputError(f"lr must be > 0, got {self.lr}")
        if self.mode == "gaussian" and not self.sigma > 0:
            raise InputError(f"sigma must be > 0 for mode 'gaussian', got {self.sigma}")
        if self.mode == "noise":
            if not self.noise:
                raise InputError("mode 'noise' needs a noise family (noise=..., CLI --noise), e.g. gen_gaussian")
            from ..certify.noises import make_noise

            make_noise(self.noise, sigma=self.sigma, **self.noise_params)  # raises on a bad name/parameter
        if self.mode == "pgd" and not self.eps > 0:
            raise InputError(f"eps must be > 0 for mode 'pgd', got {self.eps}")
        if self.optimizer not in ("adam", "sgd"):
            raise InputError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")


@TRAIN_MODES.register("plain")
def _plain(model: nn.Module, x: Tensor, y: Tensor, g: torch.Generator, cfg: TrainConfig) -> Tensor:
    return x


@TRAIN_MODES.register("gaussian")
def _gaussian(model: nn.Module, x: Tensor, y: Tensor, g: torch.Generator, cfg: TrainConfig) -> Tensor:
    from ..certify.noises import make_noise

    return x + make_noise("gaussian", sigma=cfg.sigma).sample(x.shape, g).to(x.device)


@TRAIN_MODES.register("noise")
def _noise(model: nn.Module, x: Tensor, y: Tensor, g: torch.Generator, cfg: TrainConfig) -> Tensor:
    from ..certify.noises import make_noise

    nz = make_noise(cfg.noise or "", sigma=cfg.sigma, **cfg.noise_params)
    return x + nz.sample(x.shape, g).to(x.device)


@TRAIN_MODES.register("pgd")
def _pgd(model: nn.Module, x: Tensor, y: Tensor, g: torch.Generator, cfg: TrainConfig) -> Tensor:
    from .pgd import pgd_perturb

    model.eval()
    x_adv = pgd_perturb(model, x, y, eps=cfg.eps, norm="linf", steps=cfg.pgd_steps, generator=g)
    model.train()
    return x_adv


@dataclass
class TrainResult:
    config: TrainConfig
    history: list[dict[str, float]]
    seconds: float
    train_accuracy: float

    def to_dict(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "history": self.history, "seconds": self.seconds,
                "train_accuracy": self.train_accuracy}


def optim_config(cfg: TrainConfig) -> OptimConfig:
    """The optimiser of :func:`train_classifier`: Adam at constant ``lr``, or SGD (momentum 0.9, Nesterov)
    with a one-cycle schedule peaking at ``lr``; ``weight_decay`` as L2 in both."""
    if cfg.optimizer == "adam":
        return OptimConfig("adam", lr=cfg.lr, weight_decay=cfg.weight_decay)
    return OptimConfig("sgd", lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=0.9, nesterov=True,
                       scheduler="onecycle", pct_start=0.25)


def classifier_step(model: nn.Module, cfg: TrainConfig, generator: torch.Generator) -> StepFn:
    """The step of every training mode: ``CE(model(augment(x)), y)``, the augmentation (noise, PGD) drawn
    from ``generator``. Batch ``(x (B, C, H, W), y (B,))``; sums ``loss`` and ``train_accuracy`` (correct)."""
    augment = TRAIN_MODES[cfg.mode]
    dev = next(model.parameters()).device

    def step(batch: Batch) -> StepOutput:
        x, y = batch[0].to(dev), batch[1].to(dev)
        logits = model(augment(model, x, y, generator, cfg))
        loss = F.cross_entropy(logits, y)
        return StepOutput(loss, {"loss": float(loss.detach()) * len(y),
                                 "train_accuracy": int((logits.argmax(1) == y).sum())})
    return step


def train_classifier(model: nn.Module, data: ImageDataset, cfg: TrainConfig, *,
                     on_event: EventCallback | None = None) -> TrainResult:
    """Train ``model`` in place on ``data`` with ``cfg``; returns the loss/accuracy history.

    Uses its own generators (seeded with ``cfg.seed`` for shuffling, ``cfg.seed + 1`` on the model's
    device for noise and PGD starts); never touches the global RNG. Ends with the model in eval mode.
    """
    cfg.check()
    dev = next(model.parameters()).device
    g = torch.Generator(device="cpu").manual_seed(cfg.seed)
    gd = torch.Generator(device=dev).manual_seed(cfg.seed + 1)
    params = [p for p in model.parameters() if p.requires_grad]

    def report(row: dict[str, float]) -> None:
        emit(on_event, "info", "train", message=f"epoch {int(row['epoch'])}/{cfg.epochs} loss {row['loss']:.4f} "
                                                f"acc {row['train_accuracy']:.4f}")

    res = fit(params, data, classifier_step(model, cfg, gd), epochs=cfg.epochs, batch_size=cfg.batch_size,
              generator=g, optim=optim_config(cfg), modules=[model], on_epoch=report, task="train",
              on_event=on_event)
    acc = res.history[-1]["train_accuracy"] if res.history else 0.0
    return TrainResult(cfg, res.history, res.seconds, acc)


@torch.no_grad()
def accuracy(model: nn.Module, data: ImageDataset, *, batch_size: int = 500) -> float:
    """Clean top-1 accuracy of ``model`` on ``data``."""
    model.eval()
    dev = next(model.parameters()).device
    correct = 0
    for i in range(0, len(data), batch_size):
        correct += int((model(data.x[i:i + batch_size].to(dev)).argmax(1).cpu() == data.y[i:i + batch_size]).sum())
    return correct / max(len(data), 1)
