"""What a membership-inference attacker observes, and the per-example signals computed from it.

Outputs are always read through a :class:`~bbdefense.models.BlackBox` (``query``, so every image
is counted once per call). :func:`model_outputs` turns what the API reveals into a probability
matrix ``(N, K)``: softmax of logits, probabilities as given, or the one-hot vector of the label
(label-only APIs: only the gap attack is meaningful there).

A smoothed classifier (:class:`bbdefense.certify.Smooth`) is attacked through
:func:`smoothed_blackbox`: a black box whose output is the Monte-Carlo class frequencies
``counts / n`` of the base model under noise (each image charges ``n`` queries on the base model
and 1 on the returned box).

Signals (Song & Mittal, "Systematic evaluation of privacy risks of machine learning models",
USENIX Security 2021, §3; higher score = more likely a member, so loss/entropies are negated):

* ``confidence``: ``p_y``.
* ``loss``: ``log p_y`` (minus the cross-entropy loss).
* ``entropy``: ``sum_i p_i log p_i`` (minus the prediction entropy; uses no label).
* ``modified_entropy``: ``-Mentr`` with
  ``Mentr(p, y) = -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)`` (their Eq. 5).

``p`` and ``1 - p`` are clamped below at 1e-30 inside logs (a smoothed classifier's frequencies
are often exactly 0 or 1), so every signal is finite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..errors import InputError
from ..models import BlackBox

if TYPE_CHECKING:
    from ..certify import Smooth

_EPS = 1e-30
SIGNALS = ("confidence", "loss", "entropy", "modified_entropy")


def model_outputs(bb: BlackBox, x: Tensor, *, batch_size: int = 500) -> Tensor:
    """Query ``bb`` once per image; returns probabilities ``(N, K)`` float64 (one-hot for label APIs)."""
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    parts = []
    for i in range(0, x.shape[0], batch_size):
        out = bb.query(x[i:i + batch_size])
        if bb.output == "logits":
            p = torch.softmax(out.double(), dim=1)
        elif bb.output == "probs":
            p = out.double()
        else:
            lab = out.long()
            p = torch.zeros(lab.shape[0], bb.num_classes, dtype=torch.float64, device=lab.device)
            ok = (lab >= 0) & (lab < bb.num_classes)  # an abstaining model (-1) gives an all-zero row
            p[ok.nonzero().squeeze(1), lab[ok]] = 1.0
        parts.append(p.cpu())
    return torch.cat(parts) if parts else torch.zeros(0, bb.num_classes, dtype=torch.float64)


def _check(probs: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    if probs.ndim != 2:
        raise InputError(f"probs must be (N, K), got shape {tuple(probs.shape)}")
    y = torch.as_tensor(y).long().reshape(-1).cpu()
    if y.shape[0] != probs.shape[0]:
        raise InputError(f"probs has {probs.shape[0]} rows but y has {y.shape[0]} labels")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= probs.shape[1]):
        raise InputError(f"labels must be in [0, {probs.shape[1]}), got range [{int(y.min())}, {int(y.max())}]")
    return probs.double().cpu(), y


def signal(name: str, probs: Tensor, y: Tensor) -> Tensor:
    """Membership score ``(N,)`` float64 of signal ``name`` from probabilities ``(N, K)`` and labels ``(N,)``."""
    p, y = _check(probs, y)
    pc = p.clamp_min(_EPS)
    py = pc.gather(1, y[:, None]).squeeze(1)
    if name == "confidence":
        return p.gather(1, y[:, None]).squeeze(1)
    if name == "loss":
        return torch.log(py)
    if name == "entropy":
        return (p * torch.log(pc)).sum(1)
    if name == "modified_entropy":
        other = p * torch.log((1 - p).clamp_min(_EPS))
        other.scatter_(1, y[:, None], 0.0)
        mentr = -(1 - py) * torch.log(py) - other.sum(1)
        return -mentr
    raise InputError(f"unknown signal {name!r}; choose one of: {', '.join(SIGNALS)}")


def smoothed_blackbox(smooth: Smooth, *, n: int = 100, seed: int = 0, batch_size: int = 1000,
                      name: str = "smoothed") -> BlackBox:
    """The smoothed classifier's class frequencies ``counts / n`` as a ``probs`` black box.

    Each image costs ``n`` base-model queries (counted on ``smooth.model``) and 1 query on the
    returned box. Successive calls draw fresh noise (the call number enters the seed).
    """
    if n < 1:
        raise InputError(f"n must be >= 1, got {n}")
    state = {"calls": 0}

    def fn(x: Tensor) -> Tensor:
        state["calls"] += 1
        c = smooth.sample_counts(x, n, seed=seed + 7919 * state["calls"], phase=5, batch_size=batch_size)
        return (c.double() / n).float().to(x.device)

    f: Callable[[Tensor], Tensor] = fn
    bb = BlackBox.from_callable(f, returns="probs", num_classes=smooth.model.num_classes,
                                input_shape=smooth.model.input_shape, randomized=True, output="probs", name=name)
    # An attribute only this black box carries (base-model queries per image), read by the reports through getattr;
    # BlackBox declares no such field, hence the ignore.
    bb.samples_per_query = n  # type: ignore[attr-defined]
    return bb


__all__ = ["SIGNALS", "model_outputs", "signal", "smoothed_blackbox"]
