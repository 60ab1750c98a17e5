"""DUCD step 1: distil a white-box surrogate from a :class:`~bbdefense.models.BlackBox` under a hard
query budget (Li et al., "Privacy-preserving Universal Adversarial Defense for Black-box Models",
arXiv 2408.10647, §III-B). The paper has no public code; this is written from the paper
(algorithms.md §4.1).

Objective (Eq. 6, per image, summed over the C classes, averaged over the batch)::

    logits  : L = sum_c |t_c - a_c|                           t = target logits, a = surrogate logits
    probs   : L = sum_c |c(log max(p, eps))_c - c(a)_c|, c(v) = v - mean_c v   (log-probs as logits)
    label   : L = cross_entropy(a, label)                     (hard-label APIs)

Query design (the budget is exact and never exceeded):

1. The *transfer set* is built **before** training, in batches of ``query_batch`` images.
   With ``budget B`` and ``N`` distillation images, the first ``min(B, N)`` queries are the
   images themselves in a seeded random order (so a budget ``b < B`` run queries a prefix of a
   budget ``B`` run); the remaining ``B - N`` queries are
   seeded **augmented** images (random shift, mixup of two images, additive Gaussian noise; see
   :func:`augment_batch`). Every output is cached, so training epochs cost no query.
2. Training then runs ``epochs`` passes over the cached transfer set. Queries spent == transfer
   set size == ``min(B, available)`` exactly; the black box's own counter is checked against it.
3. A transfer set can be saved and reloaded (:meth:`TransferSet.save`), so a rerun or a second
   surrogate spends no new query.

Shapes: distillation images ``(N, C, H, W)`` in [0, 1]; target outputs ``(N, K)`` (logits/probs)
or ``(N,)`` int64 (labels).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...certify import make_noise
from ...data import ImageDataset
from ...errors import AccessError, CheckpointError, InputError
from ...events import EventCallback, emit
from ...models import BlackBox
from ...models.zoo import MODELS, build_model
from ...training.loop import Batch, OptimConfig, StepOutput, fit
from ...utils import make_generator, seeded_init

LossName = Literal["auto", "l1_logits", "l1_logprobs", "ce_labels"]
LOSSES: tuple[str, ...] = ("l1_logits", "l1_logprobs", "ce_labels")
AUGMENTS: tuple[str, ...] = ("shift", "mixup", "noise")
LOSS_FOR_OUTPUT = {"logits": "l1_logits", "probs": "l1_logprobs", "label": "ce_labels"}
NEEDS_OUTPUT = {"l1_logits": ("logits",), "l1_logprobs": ("logits", "probs"), "ce_labels": ("logits", "probs", "label")}


@dataclass
class DistillConfig:
    """Hyperparameters of :func:`distill` (recorded with every run).

    Args:
        budget: queries the distillation may spend; ``None`` queries each distillation image once
            (capped by the black box's remaining budget).
        loss: ``auto`` (from the black box's output: logits -> ``l1_logits`` (Eq. 6), probs ->
            ``l1_logprobs``, label -> ``ce_labels``) or one of those names.
        epochs: passes over the cached transfer set (free of queries).
        batch_size, lr, weight_decay: Adam with cosine decay to 0 over all steps.
        augment: the kinds of augmented queries spent with the budget beyond the base images.
        max_shift: largest translation of ``shift`` in pixels; ``noise_std``: std of ``noise``.
        query_batch: images per oracle call.
        prob_floor: ``eps`` of ``l1_logprobs`` (probabilities below it are clamped; top-k APIs).
        seed: transfer-set sampling and shuffling (own generators).
    """

    budget: int | None = None
    loss: LossName = "auto"
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    augment: tuple[str, ...] = ("shift", "mixup", "noise")
    max_shift: int = 2
    noise_std: float = 0.1
    query_batch: int = 500
    prob_floor: float = 1e-6
    seed: int = 0

    def check(self) -> None:
        if self.budget is not None and self.budget < 1:
            raise InputError(f"budget must be >= 1 or None, got {self.budget}")
        if self.loss != "auto" and self.loss not in LOSSES:
            raise InputError(f"unknown distillation loss {self.loss!r}; choose auto or one of {', '.join(LOSSES)}")
        for a in self.augment:
            if a not in AUGMENTS:
                raise InputError(f"unknown augmentation {a!r}; choose from {', '.join(AUGMENTS)}")
        if self.epochs < 1:
            raise InputError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1 or self.query_batch < 1:
            raise InputError(f"batch sizes must be >= 1, got batch_size={self.batch_size}, "
                             f"query_batch={self.query_batch}")
        if not self.lr > 0:
            raise InputError(f"lr must be > 0, got {self.lr}")
        if self.max_shift < 0 or self.noise_std < 0:
            raise InputError(f"max_shift and noise_std must be >= 0, got {self.max_shift}, {self.noise_std}")
        if not 0 < self.prob_floor < 1:
            raise InputError(f"prob_floor must be in (0, 1), got {self.prob_floor}")


def distill_loss(name: str, surrogate_logits: Tensor, target: Tensor, *, prob_floor: float = 1e-6) -> Tensor:
    """The distillation loss, averaged over the batch.

    Args:
        name: ``l1_logits`` (Eq. 6), ``l1_logprobs`` or ``ce_labels``.
        surrogate_logits: ``(B, K)``.
        target: ``(B, K)`` logits (``l1_logits``), ``(B, K)`` probabilities (``l1_logprobs``) or
            ``(B,)`` int64 labels (``ce_labels``).
    """
    if name == "l1_logits":
        return (target - surrogate_logits).abs().sum(dim=1).mean()
    if name == "l1_logprobs":
        # log-probabilities ARE logits up to a per-image shift: compare both centred (Eq. 6 on
        # shift-free logits). Only the target is floored (zero probabilities of top-k APIs).
        # Measured: L1 on raw log_softmax instead collapses to one class (it rewards any peaked
        # distribution, the softmax coupling pushes the surrogate's own argmax up).
        t = target.clamp_min(prob_floor).log()
        t = t - t.mean(dim=1, keepdim=True)
        a = surrogate_logits - surrogate_logits.mean(dim=1, keepdim=True)
        return (t - a).abs().sum(dim=1).mean()
    if name == "ce_labels":
        return F.cross_entropy(surrogate_logits, target.long())
    raise InputError(f"unknown distillation loss {name!r}; choose one of {', '.join(LOSSES)}")


def resolve_loss(loss: str, output: str) -> str:
    """The loss actually used for a black box revealing ``output``; refuses impossible pairs."""
    name = LOSS_FOR_OUTPUT[output] if loss == "auto" else loss
    if output not in NEEDS_OUTPUT[name]:
        raise AccessError(f"loss {name!r} needs a black box revealing {' or '.join(NEEDS_OUTPUT[name])}, "
                          f"this one reveals {output!r}")
    return name


def _target_for_loss(name: str, out: Tensor, output: str) -> Tensor:
    """Turn what the oracle revealed into the loss's target (probs from logits, labels from scores)."""
    if name == "ce_labels":
        return out.long() if output == "label" else out.argmax(dim=1)
    if name == "l1_logprobs" and output == "logits":
        return torch.softmax(out, dim=1)
    return out


def augment_batch(x: Tensor, pool: Tensor, kinds: tuple[str, ...], g: torch.Generator, *,
                  max_shift: int = 2, noise_std: float = 0.1) -> Tensor:
    """Seeded augmented queries built from images of the distillation set.

    ``x`` ``(B, C, H, W)`` gets, each with probability 1/2 per image, independently: ``shift``
    (integer translation in [-max_shift, max_shift]^2 with zero fill), ``mixup`` (convex
    combination ``l x + (1 - l) x'`` with another pool image, ``l ~ U(0, 1)``), ``noise``
    (``+ N(0, noise_std^2)``, drawn by :class:`bbdefense.certify.Noise`); clipped to [0, 1].
    Returns ``(B, C, H, W)`` float32.
    """
    b = x.shape[0]
    y = x.clone()
    if "shift" in kinds and max_shift > 0:
        pad = F.pad(y, (max_shift,) * 4)
        h, w = y.shape[-2:]
        sh = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=g)
        use = torch.rand(b, generator=g) < 0.5
        for i in range(b):
            if use[i]:
                r, c = int(sh[i, 0]), int(sh[i, 1])
                y[i] = pad[i, :, r:r + h, c:c + w]
    if "mixup" in kinds:
        other = pool[torch.randint(0, pool.shape[0], (b,), generator=g)]
        lam = torch.rand(b, 1, 1, 1, generator=g)
        use = (torch.rand(b, generator=g) < 0.5).view(b, 1, 1, 1)
        y = torch.where(use, lam * y + (1 - lam) * other, y)
    if "noise" in kinds and noise_std > 0:
        use = (torch.rand(b, generator=g) < 0.5).view(b, 1, 1, 1)
        y = torch.where(use, y + make_noise("gaussian", sigma=noise_std).sample(y.shape, g), y)
    return y.clamp(0, 1).contiguous().float()


@dataclass
class TransferSet:
    """The queried images and the oracle's answers: ``x`` ``(M, C, H, W)``; ``out`` ``(M, K)`` or
    ``(M,)``; the first ``n_base`` rows are distillation images, the rest augmented queries."""

    x: Tensor
    out: Tensor
    output: str
    n_base: int
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def save(self, path: str | Path) -> Path:
        """Write ``PATH.safetensors`` + ``PATH.json`` (no pickle)."""
        from safetensors.torch import save_file

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        save_file({"x": self.x.contiguous(), "out": self.out.contiguous()}, str(p.with_suffix(".safetensors")))
        p.with_suffix(".json").write_text(json.dumps({"output": self.output, "n_base": self.n_base,
                                                      "n": len(self), "info": self.info}, indent=2))
        return p.with_suffix(".safetensors")

    @classmethod
    def load(cls, path: str | Path) -> TransferSet:
        from safetensors.torch import load_file

        p = Path(path)
        if not p.with_suffix(".safetensors").is_file() or not p.with_suffix(".json").is_file():
            raise CheckpointError(f"no transfer set at {p.with_suffix('.safetensors')}")
        t = load_file(str(p.with_suffix(".safetensors")))
        meta = json.loads(p.with_suffix(".json").read_text())
        return cls(t["x"], t["out"], meta["output"], int(meta["n_base"]), meta.get("info", {}))


def collect_transfer_set(bb: BlackBox, images: Tensor, cfg: DistillConfig, *,
                         on_event: EventCallback | None = None) -> TransferSet:
    """Query ``bb`` on the distillation images (then augmented ones) until the budget is spent.

    The number of images queried is ``min(cfg.budget or N, bb remaining budget)``; it equals
    the increase of ``bb.stats.queries`` exactly (checked).
    """
    cfg.check()
    n = int(images.shape[0])
    if n == 0:
        raise InputError("the distillation set is empty")
    want = n if cfg.budget is None else int(cfg.budget)
    remaining = bb.stats.remaining
    total = want if remaining is None else min(want, remaining)
    if total < 1:
        raise InputError(f"no query left: the black box has {remaining} of budget {bb.budget} remaining")
    g = make_generator(cfg.seed)
    n_base = min(total, n)
    base_idx = torch.randperm(n, generator=g)[:n_base]  # seeded order: budget b queries a prefix of budget B
    start = bb.stats.queries
    xs: list[Tensor] = []
    outs: list[Tensor] = []
    emit(on_event, "start", "distill:query", total=total, unit="images")
    done = 0
    while done < total:
        k = min(cfg.query_batch, total - done)
        if done < n_base:
            k = min(k, n_base - done)
            xb = images[base_idx[done:done + k]].float()
        else:
            src = images[torch.randint(0, n, (k,), generator=g)]
            xb = augment_batch(src, images, cfg.augment, g, max_shift=cfg.max_shift, noise_std=cfg.noise_std)
        ob = bb.query(xb.to(images.device))
        xs.append(xb.cpu())
        outs.append(ob.detach().cpu())
        done += k
        emit(on_event, "advance", "distill:query", n=k, queries=k)
    emit(on_event, "end", "distill:query")
    spent = bb.stats.queries - start
    if spent != total:  # pragma: no cover - the oracle is the only counter; a mismatch is a bug
        raise RuntimeError(f"query accounting mismatch: planned {total}, the black box counted {spent}")
    return TransferSet(torch.cat(xs), torch.cat(outs), bb.output, n_base,
                       {"budget": cfg.budget, "queries": total, "augment": list(cfg.augment), "seed": cfg.seed})


def build_surrogate(arch: str, *, num_classes: int, input_shape: tuple[int, int, int],
                    mean: tuple[float, ...] | list[float], std: tuple[float, ...] | list[float],
                    seed: int = 0) -> nn.Module:
    """A fresh zoo classifier for the surrogate (parameter init from a forked, seeded global RNG,
    so the caller's RNG stream is untouched)."""
    entry = MODELS[arch]
    if entry.kind != "classifier":
        raise InputError(f"{arch!r} is a {entry.kind}, not a classifier; the surrogate must be a classifier")
    c, h, _ = input_shape
    with seeded_init(seed):
        return build_model(arch, num_classes=num_classes, in_channels=c, image_size=h, mean=list(mean),
                           std=list(std))


@dataclass
class DistillResult:
    """What :func:`distill` did: queries spent (== transfer-set size), the loss, the history."""

    loss: str
    queries: int
    n_base: int
    n_augmented: int
    history: list[dict[str, float]]
    seconds_query: float
    seconds_train: float
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_on_transfer(surrogate: nn.Module, ts: TransferSet, cfg: DistillConfig, *, loss: str,
                      on_event: EventCallback | None = None,
                      on_epoch: Callable[[dict[str, float]], None] | None = None) -> list[dict[str, float]]:
    """Fit ``surrogate`` (in place) to the cached answers; no query. Returns per-epoch history
    (``epoch``, ``loss``, ``agreement``: argmax agreement with the target on the transfer set)."""
    dev = next(surrogate.parameters()).device
    target = _target_for_loss(loss, ts.out, ts.output)
    t_lab = ts.out.long() if ts.output == "label" else ts.out.argmax(dim=1)

    def step(batch: Batch) -> StepOutput:
        x, t, lab = batch
        a = surrogate(x.to(dev))
        lv = distill_loss(loss, a, t.to(dev), prob_floor=cfg.prob_floor)
        return StepOutput(lv, {"loss": float(lv.detach()) * len(x),
                               "agreement": int((a.detach().argmax(1).cpu() == lab).sum())})

    res = fit(surrogate.parameters(), (ts.x, target, t_lab), step, epochs=cfg.epochs, batch_size=cfg.batch_size,
              generator=make_generator(cfg.seed + 1),
              optim=OptimConfig("adam", lr=cfg.lr, weight_decay=cfg.weight_decay, scheduler="cosine"),
              modules=[surrogate], on_epoch=on_epoch, task="distill:train", on_event=on_event)
    return res.history


def distill(bb: BlackBox, surrogate: nn.Module, data: ImageDataset | Tensor, cfg: DistillConfig | None = None, *,
            transfer: TransferSet | None = None, on_event: EventCallback | None = None,
            on_epoch: Callable[[dict[str, float]], None] | None = None) -> tuple[DistillResult, TransferSet]:
    """Distil ``bb`` into ``surrogate`` (trained in place) using only ``bb``'s outputs.

    Args:
        bb: the target; any :class:`BlackBox` (local, ONNX, remote). Only :meth:`BlackBox.query`
            is used, so its budget and counters see every query.
        surrogate: a classifier ``(N, C, H, W) -> (N, K)`` (e.g. :func:`build_surrogate`).
        data: the defender's distillation images (labels, if any, are never used).
        cfg: see :class:`DistillConfig`.
        transfer: a previously collected transfer set to reuse (spends no query).

    Returns:
        ``(result, transfer_set)``; ``result.queries`` is the number of queries this call spent.
    """
    cfg = cfg or DistillConfig()
    cfg.check()
    images = data.x if isinstance(data, ImageDataset) else data
    if tuple(images.shape[1:]) != tuple(bb.input_shape):
        raise InputError(f"distillation images have shape {tuple(images.shape[1:])}, the black box expects "
                         f"{tuple(bb.input_shape)}")
    t0 = time.perf_counter()
    q0 = bb.stats.queries
    if transfer is None:
        transfer = collect_transfer_set(bb, images, cfg, on_event=on_event)
    loss = resolve_loss(cfg.loss, transfer.output)
    t1 = time.perf_counter()
    hist = train_on_transfer(surrogate, transfer, cfg, loss=loss, on_event=on_event, on_epoch=on_epoch)
    res = DistillResult(loss=loss, queries=bb.stats.queries - q0, n_base=transfer.n_base,
                        n_augmented=len(transfer) - transfer.n_base, history=hist, seconds_query=t1 - t0,
                        seconds_train=time.perf_counter() - t1, config={**asdict(cfg), "augment": list(cfg.augment)})
    return res, transfer


__all__ = ["AUGMENTS", "LOSSES", "DistillConfig", "DistillResult", "TransferSet", "augment_batch", "build_surrogate",
           "collect_transfer_set", "distill", "distill_loss", "resolve_loss", "train_on_transfer"]
