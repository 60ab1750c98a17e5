"""The one training loop of bbdefense: every optimiser in the project runs through :func:`fit`.

A method supplies a *step function* ``step(batch) -> loss`` (or a :class:`StepOutput` with the loss,
per-batch metric sums and the black-box queries the step charged); :func:`fit` does the rest:

* epochs over seeded batches: each epoch draws ``torch.randperm(n, generator=generator)`` and cuts it
  into consecutive batches of ``batch_size`` (the last one shorter unless ``drop_last``); a batch is the
  tuple ``(t[idx] for t in tensors)`` (an :class:`~bbdefense.data.ImageDataset` gives ``(x, y)``);
* per step: ``zero_grad`` -> ``loss.backward()`` -> optional gradient-norm clipping -> ``optimizer.step()``
  -> ``scheduler.step()`` (the scheduler, when any, steps once per batch);
* an optimiser and scheduler built from an :class:`OptimConfig` (or a caller's optimiser, e.g. one kept
  across several calls as KnockoffNets' online rounds do);
* per-epoch history rows ``{"epoch": e, <metric>: sum over the epoch / examples seen, "queries": ...}``
  and progress events ``start`` (``total=epochs``, ``unit="epochs"``), one ``advance`` per epoch with the
  queries its steps charged, ``end``;
* stops after ``max_steps`` optimiser steps or when ``early_stop(row)`` returns True after an epoch.

The loop itself draws nothing but the permutations; a step that needs randomness (noise, PGD starts, ZO
directions) draws it from a generator it captured, and smoothing noise is drawn through
:meth:`bbdefense.certify.Noise.sample`. Ports of older loops kept their RNG consumption order (one
permutation per epoch, then the step's draws in batch order), so their results are bit-identical.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..data import ImageDataset
from ..errors import InputError
from ..events import EventCallback, emit

Batch = tuple[Tensor, ...]


@dataclass
class StepOutput:
    """What a step returns: ``loss`` (scalar, back-propagated by the loop; None: the step did its own
    update), ``sums`` (metrics summed over the batch, e.g. ``{"loss": loss * B, "correct": k}``; the epoch
    row divides them by the examples seen) and the black-box ``queries`` the step charged."""

    loss: Tensor | None
    sums: dict[str, float] = field(default_factory=dict)
    queries: int = 0


StepFn = Callable[[Batch], "StepOutput | Tensor"]


@dataclass
class OptimConfig:
    """Optimiser and scheduler of :func:`fit`.

    ``name``: ``adam`` (Adam, ``weight_decay`` as L2) or ``sgd`` (``momentum``, ``nesterov``).
    ``scheduler``: None (constant ``lr``), ``onecycle`` (OneCycleLR to ``lr``, ``pct_start``) or ``cosine``
    (CosineAnnealingLR to 0); both over all the steps of the run, stepped once per batch.
    ``clip_grad_norm``: clip the global gradient l2 norm to this value before each step (None: no clip).
    """

    name: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    scheduler: Literal["onecycle", "cosine"] | None = None
    pct_start: float = 0.25
    clip_grad_norm: float | None = None

    def check(self) -> None:
        if self.name not in ("adam", "sgd"):
            raise InputError(f"optimizer must be 'adam' or 'sgd', got {self.name!r}")
        if not self.lr > 0:
            raise InputError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise InputError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.scheduler not in (None, "onecycle", "cosine"):
            raise InputError(f"scheduler must be None, 'onecycle' or 'cosine', got {self.scheduler!r}")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise InputError(f"clip_grad_norm must be > 0 or None, got {self.clip_grad_norm}")


def make_optimizer(params: Iterable[nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    """The optimiser ``cfg`` describes over ``params``."""
    cfg.check()
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           nesterov=cfg.nesterov)


def make_scheduler(opt: torch.optim.Optimizer, cfg: OptimConfig,
                   total_steps: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-batch scheduler ``cfg.scheduler`` over ``total_steps`` steps (None for a constant lr)."""
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total_steps,
                                                   pct_start=cfg.pct_start)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    return None


@dataclass
class FitResult:
    """What :func:`fit` did: per-epoch ``history`` rows, optimiser ``steps``, completed ``epochs``, the
    ``queries`` its steps charged, why it stopped (``"epochs"``, ``"max_steps"``, ``"early_stop"``)."""

    history: list[dict[str, float]]
    steps: int
    epochs: int
    queries: int
    seconds: float
    stopped: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def as_tensors(data: ImageDataset | Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
    """``(x, y)`` of a dataset, ``(t,)`` of one tensor, or the tensors given (same first dimension)."""
    if isinstance(data, ImageDataset):
        return (data.x, data.y)
    ts = (data,) if isinstance(data, Tensor) else tuple(data)
    if not ts or any(t.shape[0] != ts[0].shape[0] for t in ts):
        raise InputError(f"training data must be tensors with the same first dimension, got shapes "
                         f"{[tuple(t.shape) for t in ts]}")
    return ts


def fit(params: Iterable[nn.Parameter] | None, data: ImageDataset | Tensor | Sequence[Tensor], step: StepFn, *,
        epochs: int, batch_size: int, generator: torch.Generator, optim: OptimConfig | None = None,
        optimizer: torch.optim.Optimizer | None = None, max_steps: int | None = None,
        early_stop: Callable[[dict[str, float]], bool] | None = None, drop_last: bool = False,
        modules: Sequence[nn.Module] = (), before_epoch: Callable[[int], None] | None = None,
        on_epoch: Callable[[dict[str, float]], None] | None = None, task: str = "train",
        on_event: EventCallback | None = None) -> FitResult:
    """Run ``step`` over ``epochs`` passes of seeded batches of ``data``, updating ``params``.

    Args:
        params: the trained parameters (the optimiser is ``make_optimizer(params, optim)``); ignored when
            ``optimizer`` is given.
        data: an :class:`ImageDataset` (batches ``(x, y)``), a tensor (``(x,)``) or tensors sharing the
            first dimension ``N`` (batches ``(t1[idx], t2[idx], ...)``), on any device; steps move them.
        step: ``batch -> loss`` or ``batch -> StepOutput``; it runs the forward pass (in train mode).
        epochs, batch_size: passes and batch size; ``ceil(N / batch_size)`` steps per epoch
            (``floor`` with ``drop_last``).
        generator: the CPU generator of the batch permutations (a step may share it: draws then
            interleave as permutation, batch 1's draws, batch 2's draws, ...).
        optim: optimiser/scheduler/clipping settings (default :class:`OptimConfig`); with ``optimizer``
            given only its ``clip_grad_norm`` is used and its scheduler is built on that optimiser.
        max_steps: stop after that many optimiser steps (the last epoch row covers the batches done).
        early_stop: called with each epoch row; True stops the run.
        modules: put in train mode at the start of each epoch and in eval mode at the end.
        before_epoch: called with the 0-based epoch index after ``modules`` are set to train mode.
        on_epoch: called with each epoch row (after it is appended to the history).
        task, on_event: progress events (``unit="epochs"``; each ``advance`` carries its queries).

    Returns:
        :class:`FitResult`. Objective: whatever ``step`` returns, minimised by the optimiser.
    """
    if epochs < 0:
        raise InputError(f"epochs must be >= 0, got {epochs}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if max_steps is not None and max_steps < 1:
        raise InputError(f"max_steps must be >= 1 or None, got {max_steps}")
    tensors = as_tensors(data)
    n = int(tensors[0].shape[0])
    if n == 0:
        raise InputError("training data is empty")
    per_epoch = n // batch_size if drop_last else math.ceil(n / batch_size)
    if per_epoch == 0:
        raise InputError(f"drop_last with batch_size {batch_size} > {n} examples leaves no batch")
    cfg = optim or OptimConfig()
    cfg.check()
    if optimizer is None:
        if params is None:
            raise InputError("fit needs params or an optimizer")
        optimizer = make_optimizer(params, cfg)
    total = epochs * per_epoch if max_steps is None else min(epochs * per_epoch, max_steps)
    sched = make_scheduler(optimizer, cfg, total) if total > 0 else None
    clip_params = [p for grp in optimizer.param_groups for p in grp["params"]]
    history: list[dict[str, float]] = []
    steps = queries = done_epochs = 0
    stopped = "epochs"
    t0 = time.perf_counter()
    emit(on_event, "start", task, total=epochs, unit="epochs")
    for epoch in range(epochs):
        for m in modules:
            m.train()
        if before_epoch is not None:
            before_epoch(epoch)
        perm = torch.randperm(n, generator=generator)
        sums: dict[str, float] = {}
        seen = q_epoch = 0
        for i in range(per_epoch):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            out = step(tuple(t[idx] for t in tensors))
            res = out if isinstance(out, StepOutput) else StepOutput(out, {"loss": float(out.detach()) * len(idx)})
            if res.loss is not None:
                optimizer.zero_grad(set_to_none=True)
                res.loss.backward()
                if cfg.clip_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(clip_params, cfg.clip_grad_norm)
                optimizer.step()
            if sched is not None:
                sched.step()
            steps += 1
            seen += len(idx)
            q_epoch += res.queries
            for k, v in res.sums.items():
                sums[k] = sums.get(k, 0.0) + v
            if max_steps is not None and steps >= max_steps:
                stopped = "max_steps"
                break
        queries += q_epoch
        done_epochs += 1
        row: dict[str, float] = {"epoch": epoch + 1, **{k: v / seen for k, v in sums.items()}}
        if q_epoch or queries:
            row["queries"] = queries
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        emit(on_event, "advance", task, queries=q_epoch)
        if stopped == "epochs" and early_stop is not None and early_stop(row):
            stopped = "early_stop"
        if stopped != "epochs":
            break
    emit(on_event, "end", task)
    for m in modules:
        m.eval()
    return FitResult(history, steps, done_epochs, queries, time.perf_counter() - t0, stopped)


__all__ = ["Batch", "FitResult", "OptimConfig", "StepFn", "StepOutput", "as_tensors", "fit", "make_optimizer",
           "make_scheduler"]
