"""KnockoffNets model stealing (Orekondy, Schiele & Fritz, CVPR 2019, arXiv 1812.02766).

Objective: with at most ``budget`` queries of a victim black box, train a *knockoff* model
``F_A`` that imitates it: query images drawn from a transfer set (another labelled image
collection), record the victim's outputs (probabilities when it reveals them, else labels) and
fit ``F_A`` on them with cross-entropy against those (soft) labels.

Sampling strategies (paper section 4.1):

* ``random``: a uniform sample of ``budget`` transfer images without replacement.
* ``adaptive``: a gradient bandit over the transfer set's classes (its *actions*). At each round
  every sample picks a class ``a ~ softmax(H)`` and an unused image of that class; after the victim
  answers, the reward ``r`` updates ``H_a += lr (r - r_mean)(1 - pi_a)`` and
  ``H_b -= lr (r - r_mean) pi_b`` for ``b != a`` (Sutton & Barto's gradient bandit, baseline =
  running mean reward). Rewards: ``cert`` (victim's top-1 minus top-2 probability), ``div``
  (``sum_k max(0, y_k - mean of recent y_k)``), ``loss`` (CE between victim output and knockoff
  prediction), ``all`` (their sum, each standardised by its running mean and std). The knockoff is
  updated online on each round's batch, and trained on everything at the end.

Reference: the paper and ART's ``KnockoffNets`` (the peer implementation, see
``shared/reference/art.md``), re-implemented (not copied). Differences from ART: the adaptive
bandit acts on batches of ``batch_size_query`` samples per round (ART: one sample and one full
knockoff fit per query); victim queries go through the counted oracle and total exactly
``budget``; agreement/accuracy are measured with the victim's :meth:`BlackBox.audit` (free on a local
victim; a remote API charges it, so there only as many images as ``victim.audit_allowance`` permits).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import ImageDataset
from ..errors import InputError
from ..events import EventCallback, emit
from ..models import BlackBox, build_model
from ..training.loop import Batch, OptimConfig, fit, make_optimizer
from ..utils import make_generator, seeded_init

REWARDS = ("cert", "div", "loss", "all")


@dataclass
class StealResult:
    """The stolen model and how well it imitates the victim.

    ``queries`` is the number of victim queries charged (== ``budget``); ``agreement`` and
    ``accuracy`` are measured on ``eval_set`` (None without one). ``accuracy`` is the knockoff's own
    (local, on all of ``eval_set``); ``agreement`` and ``victim_accuracy`` need the victim's answers
    (audit queries) and are measured on the first ``eval_n`` images: all of them on a local victim
    (free), as many as ``victim.audit_allowance`` permits on a remote one, where ``eval_charged`` (None
    when 0). ``class_counts`` counts queried images per transfer-set class.
    """

    model: nn.Module
    queries: int
    agreement: float | None
    accuracy: float | None
    victim_accuracy: float | None
    strategy: str
    class_counts: list[int]
    seconds: float
    params: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    eval_n: int = 0
    eval_charged: bool = False

    def save(self, path: str | Path, *, dataset: str | None = None) -> Path:
        """Write the stolen model as a bbdefense checkpoint (``PATH.safetensors`` + ``PATH.json``)."""
        from ..models import CheckpointMeta, save_checkpoint

        kw = self.arch_kwargs
        metrics = {k: v for k, v in (("agreement", self.agreement), ("test_accuracy", self.accuracy),
                                     ("victim_queries", self.queries)) if v is not None}
        meta = CheckpointMeta(arch=str(self.params["arch"]), arch_kwargs=kw, kind="classifier", dataset=dataset,
                              num_classes=kw["num_classes"], input_shape=[kw["in_channels"], kw["image_size"],
                                                                          kw["image_size"]],
                              mean=list(kw["mean"]), std=list(kw["std"]), metrics=metrics, seed=self.params["seed"],
                              extra={"knockoff": self.params, "class_counts": self.class_counts})
        return save_checkpoint(path, self.model, meta)


def _victim_targets(out: Tensor, victim: BlackBox, use_probability: bool) -> Tensor:
    """Victim answers as probability rows ``(M, K)`` (one-hot for labels)."""
    if victim.output == "label" or not use_probability:
        lab = out if victim.output == "label" else out.argmax(1)
        return F.one_hot(lab.long(), victim.num_classes).float()
    return out.float() if victim.output == "probs" else torch.softmax(out.float(), dim=1)


def _fit(model: nn.Module, x: Tensor, t: Tensor, *, epochs: int, batch_size: int, opt: torch.optim.Optimizer,
         g: torch.Generator) -> float:
    """Soft-label cross-entropy ``-sum_k t_k log softmax(model(x))_k`` on the training loop (batch order
    from ``g``, the caller's optimiser kept across calls); returns the last epoch's mean loss."""
    dev = next(model.parameters()).device

    def step(batch: Batch) -> Tensor:
        xb, tb = batch
        logp = F.log_softmax(model(xb.to(dev)), dim=1)
        return -(tb.to(dev) * logp).sum(1).mean()

    res = fit(None, (x, t), step, epochs=epochs, batch_size=batch_size, generator=g, optimizer=opt, modules=[model])
    return res.history[-1]["loss"] if res.history else 0.0


class _Running:
    """Running mean/std of a scalar stream (Welford)."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, v: Tensor) -> None:
        for r in v.tolist():
            self.n += 1
            d = r - self.mean
            self.mean += d / self.n
            self.m2 += d * (r - self.mean)

    def std(self) -> float:
        return math.sqrt(self.m2 / self.n) if self.n > 1 else 1.0


def knockoff_steal(victim: BlackBox, transfer_set: ImageDataset, *, arch: str = "smallcnn", budget: int = 1000,
                   strategy: Literal["random", "adaptive"] = "random",
                   reward: Literal["cert", "div", "loss", "all"] = "all", use_probability: bool = True,
                   epochs: int = 10, batch_size: int = 64, batch_size_query: int = 64, lr: float = 1e-3,
                   bandit_lr: float = 0.1, eval_set: ImageDataset | None = None, seed: int | None = 0,
                   device: str | torch.device = "cpu", on_event: EventCallback | None = None) -> StealResult:
    """Steal ``victim`` into a fresh zoo model ``arch`` with exactly ``budget`` victim queries.

    Args:
        victim: the black box to steal (any output mode; probabilities are used when revealed and
            ``use_probability``).
        transfer_set: the attacker's images (``x`` ``(M, C, H, W)``; its labels are only the
            adaptive strategy's actions, never training targets). ``budget <= M``.
        arch: zoo classifier to train (normalised with the transfer set's mean/std).
        strategy: ``random`` or ``adaptive``; ``reward``: the adaptive reward.
        epochs, batch_size, lr: knockoff training (Adam) on the collected answers.
        batch_size_query: images per victim call (and per bandit round).
        bandit_lr: the gradient bandit's step size.
        eval_set: if given, agreement with the victim and accuracy on its labels are measured.

    Returns: a :class:`StealResult` (``model`` in eval mode, on ``device``).
    """
    t0 = time.perf_counter()
    if strategy not in ("random", "adaptive"):
        raise InputError(f"knockoff: strategy must be 'random' or 'adaptive', got {strategy!r}")
    if reward not in REWARDS:
        raise InputError(f"knockoff: reward must be one of {', '.join(REWARDS)}, got {reward!r}")
    if not isinstance(budget, int) or not 1 <= budget <= len(transfer_set):
        raise InputError(f"knockoff: budget must be an int in [1, {len(transfer_set)}] (the transfer set size), "
                         f"got {budget!r}")
    if tuple(transfer_set.input_shape) != tuple(victim.input_shape):
        raise InputError(f"knockoff: transfer images have shape {transfer_set.input_shape}, the victim expects "
                         f"{victim.input_shape}")
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("batch_size_query", batch_size_query)):
        if not isinstance(v, int) or v < 1:
            raise InputError(f"knockoff: {name} must be an int >= 1, got {v!r}")
    g = make_generator(seed)
    c, h, _ = transfer_set.input_shape
    with seeded_init(seed):  # zoo constructors use the global RNG; keep the caller's intact
        arch_kwargs = {"num_classes": victim.num_classes, "in_channels": c, "image_size": h,
                       "mean": list(transfer_set.mean), "std": list(transfer_set.std)}
        model = build_model(arch, **arch_kwargs).to(device)
    opt = make_optimizer(model.parameters(), OptimConfig("adam", lr=lr))  # kept across the online rounds
    q_start = victim.stats.queries
    xs, ts = [], []
    classes = transfer_set.y
    counts = torch.zeros(transfer_set.num_classes, dtype=torch.long)
    history: list[dict[str, float]] = []
    emit(on_event, "start", "knockoff", total=budget, unit="queries")
    if strategy == "random":
        order = torch.randperm(len(transfer_set), generator=g)[:budget]
        for i in range(0, budget, batch_size_query):
            idx = order[i:i + batch_size_query]
            xb = transfer_set.x[idx]
            ts.append(_victim_targets(victim.query(xb), victim, use_probability).cpu())
            xs.append(xb)
            counts += torch.bincount(classes[idx], minlength=len(counts))
            emit(on_event, "advance", "knockoff", n=len(idx))
    else:
        n_act = transfer_set.num_classes
        pools = [(classes == a).nonzero().squeeze(1) for a in range(n_act)]
        pools = [p[torch.randperm(len(p), generator=g)] for p in pools]
        used = [0] * n_act
        hpref = torch.zeros(n_act, dtype=torch.float64)
        stats = {k: _Running() for k in ("cert", "div", "loss")}
        baseline = _Running()
        recent: list[Tensor] = []
        spent = 0
        while spent < budget:
            m = min(batch_size_query, budget - spent)
            acts = []
            for _ in range(m):
                avail = torch.tensor([used[a] < len(pools[a]) for a in range(n_act)])
                pi = torch.softmax(hpref, 0) * avail
                a = int(torch.multinomial(pi / pi.sum(), 1, generator=g))
                acts.append(a)
                used[a] += 1
            idx = torch.stack([pools[a][k] for a, k in zip(acts, _positions(acts, used), strict=True)])
            xb = transfer_set.x[idx]
            yv = _victim_targets(victim.query(xb), victim, use_probability).cpu()
            spent += m
            with torch.no_grad():
                logp = F.log_softmax(model(xb.to(device)), dim=1).cpu()
            top2 = yv.topk(min(2, yv.shape[1]), dim=1).values
            parts = {"cert": top2[:, 0] - top2[:, -1],
                     "div": (yv - (torch.cat(recent).mean(0) if recent else yv.mean(0))).clamp_min(0).sum(1),
                     "loss": -(yv * logp).sum(1)}
            recent = [*recent, yv][-5:]
            for k, part in parts.items():
                stats[k].add(part)
            if reward == "all":
                r = torch.stack([(v - stats[k].mean) / max(stats[k].std(), 1e-8) for k, v in parts.items()]).sum(0)
            else:
                r = parts[reward]
            for a, rv in zip(acts, r.tolist(), strict=True):
                pi = torch.softmax(hpref, 0)
                adv = rv - baseline.mean
                onehot = torch.zeros(n_act, dtype=torch.float64)
                onehot[a] = 1.0
                hpref += bandit_lr * adv * (onehot - pi)
                baseline.add(torch.tensor([rv]))
            _fit(model, xb, yv, epochs=1, batch_size=batch_size, opt=opt, g=g)
            xs.append(xb)
            ts.append(yv)
            counts += torch.bincount(torch.tensor(acts), minlength=len(counts))
            history.append({"queries": float(spent), "reward": float(r.mean())})
            emit(on_event, "advance", "knockoff", n=m)
    x_all, t_all = torch.cat(xs), torch.cat(ts)
    loss = _fit(model, x_all, t_all, epochs=epochs, batch_size=batch_size, opt=opt, g=g)
    history.append({"final_train_loss": loss})
    emit(on_event, "end", "knockoff")
    queries = victim.stats.queries - q_start
    agreement = accuracy = victim_acc = None
    eval_n = 0
    if eval_set is not None:
        with torch.no_grad():
            mine = torch.cat([model(eval_set.x[i:i + 500].to(device)).argmax(1).cpu()
                              for i in range(0, len(eval_set), 500)])
        eval_n = victim.audit_allowance(len(eval_set))  # a remote victim charges these
        theirs = torch.cat([_label(victim.audit(eval_set.x[i:min(i + 500, eval_n)]), victim).cpu()
                            for i in range(0, eval_n, 500)]) if eval_n > 0 else None
        accuracy = float((mine == eval_set.y).float().mean())
        if theirs is not None:
            agreement = float((mine[:eval_n] == theirs).float().mean())
            victim_acc = float((theirs == eval_set.y[:eval_n]).float().mean())
    params = {"arch": arch, "budget": budget, "strategy": strategy, "reward": reward,
              "use_probability": use_probability, "epochs": epochs, "batch_size": batch_size,
              "batch_size_query": batch_size_query, "lr": lr, "bandit_lr": bandit_lr, "seed": seed}
    return StealResult(model.eval(), queries, agreement, accuracy, victim_acc, strategy, counts.tolist(),
                       time.perf_counter() - t0, params, history, arch_kwargs, eval_n, victim.audit_charged)


def _label(out: Tensor, victim: BlackBox) -> Tensor:
    return out.long() if victim.output == "label" else out.argmax(1)


def _positions(acts: list[int], used: list[int]) -> list[int]:
    """Index into each class pool for the samples of this round (``used`` already counts them)."""
    seen: dict[int, int] = {}
    out = []
    for a in acts:
        total = sum(1 for b in acts if b == a)
        k = seen.get(a, 0)
        out.append(used[a] - total + k)
        seen[a] = k + 1
    return out


__all__ = ["REWARDS", "StealResult", "knockoff_steal"]
