"""Zeroth-order gradient estimators: RGE and CGE, batched so one oracle call evaluates many probes.

Both estimate the gradient of a per-sample loss ``l_b(w)`` (``w`` in R^d, one row per sample)
from loss values only. The caller supplies ``loss_fn(points) -> losses`` with
``points`` of shape ``(B, P, d)`` (P probe points per sample) and losses of shape ``(B, P)``;
the estimators stack **all** probes of a step into as few ``loss_fn`` calls as ``chunk`` allows
(one call by default), which is where the black-box queries happen. Each probe point is one
query, so the cost of a step is exact and known in advance (:func:`query_cost`).

* **RGE** (random gradient estimate; Zhang et al., ICLR 2022, Eq. 3; code ``AE_DS_train.py``
  ``train_ae``, damon-demon/Black-Box-Defense @ 68e749f)::

      g_b = (d / q) * sum_k (l_b(w_b + mu u_k) - l_b(w_b)) / mu * u_k,   u_k ~ Uniform(unit sphere)

  a fresh direction per sample and per k. It is an unbiased estimate of the gradient of the
  smoothed loss ``l_mu(w) = E_{v ~ Uniform(unit ball)} l(w + mu v)``; for a quadratic
  ``l_mu - l`` is a constant, so RGE is unbiased for the true gradient. Cost: ``q + 1`` probes
  per sample (``l_b(w_b)`` included).
* **CGE** (coordinate-wise gradient estimate, Eq. 4). ``difference="forward"`` is the paper's
  form ``(l(w + mu e_i) - l(w)) / mu`` (``d + 1`` probes, error O(mu)); ``"central"`` is the
  reference code's form ``(l(w + mu e_i) - l(w - mu e_i)) / (2 mu)`` (``2 d`` probes, error
  O(mu^2)). The code's ``CGE_sim`` averages over the d coordinates (a silent 1/d learning-rate
  change); we sum, as in Eq. 4 and the unbatched code path.

Defaults follow the paper and the code: ``mu = 0.005``, RGE ``q = 192``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ...errors import InputError

LossFn = Callable[[Tensor], Tensor]
Difference = Literal["forward", "central"]
ZO_METHODS: tuple[str, ...] = ("rge", "cge")


@dataclass
class ZOEstimate:
    """One gradient estimate.

    Attributes:
        grad: ``(B, d)`` estimated gradient per sample.
        loss: ``(B,)`` loss at the unperturbed point (``nan`` for central CGE, which never evaluates it).
        queries: probe points evaluated (= black-box queries when ``loss_fn`` queries once per point).
        calls: number of ``loss_fn`` calls (oracle batches).
    """

    grad: Tensor
    loss: Tensor
    queries: int
    calls: int


def query_cost(method: str, *, batch: int, d: int, q: int = 192, difference: Difference = "central") -> int:
    """Exact number of probe points one estimate costs for ``batch`` samples of dimension ``d``.

    RGE: ``batch * (q + 1)``; forward CGE: ``batch * (d + 1)``; central CGE: ``batch * 2 d``.
    """
    if method == "rge":
        return batch * (q + 1)
    if method == "cge":
        return batch * (d + 1 if difference == "forward" else 2 * d)
    raise InputError(f"unknown zeroth-order method {method!r}; choose one of: {', '.join(ZO_METHODS)}")


def _check(w: Tensor, mu: float) -> None:
    if w.dim() != 2:
        raise InputError(f"expected points of shape (B, d), got shape {tuple(w.shape)}")
    if not mu > 0:
        raise InputError(f"mu must be > 0, got {mu}")


def _evaluate(loss_fn: LossFn, points: Tensor, chunk: int | None) -> tuple[Tensor, int]:
    """Evaluate ``loss_fn`` on ``points`` ``(B, P, d)`` in probe-chunks; returns ``(B, P)`` and the call count."""
    b, p, _ = points.shape
    step = p if chunk is None else max(1, chunk // max(b, 1))
    outs, calls = [], 0
    for s in range(0, p, step):
        part = points[:, s:s + step]
        out = loss_fn(part)
        if tuple(out.shape) != (b, part.shape[1]):
            raise InputError(f"loss_fn must return shape {(b, part.shape[1])}, got {tuple(out.shape)}")
        outs.append(out.detach().to(points.dtype))
        calls += 1
    return torch.cat(outs, dim=1), calls


def unit_directions(batch: int, q: int, d: int, *, generator: torch.Generator | None = None,
                    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """``(batch, q, d)`` directions drawn uniformly on the unit sphere (normalised Gaussians)."""
    u = torch.randn((batch, q, d), generator=generator, device=device, dtype=dtype)
    return u / u.norm(dim=2, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def rge(loss_fn: LossFn, w: Tensor, *, q: int = 192, mu: float = 0.005, generator: torch.Generator | None = None,
        chunk: int | None = None) -> ZOEstimate:
    """Random gradient estimate with ``q`` unit-sphere directions per sample.

    Args:
        loss_fn: ``(B, P, d) -> (B, P)`` per-sample losses; every row is one query.
        w: ``(B, d)`` points.
        q: directions per sample.
        mu: smoothing radius.
        generator: draws the directions.
        chunk: at most this many probe points per ``loss_fn`` call (None: a single call).

    Returns:
        :class:`ZOEstimate` with ``queries == B * (q + 1)``.
    """
    _check(w, mu)
    if q < 1:
        raise InputError(f"q must be >= 1, got {q}")
    b, d = w.shape
    u = unit_directions(b, q, d, generator=generator, device=w.device, dtype=w.dtype)
    points = torch.cat([w.unsqueeze(1), w.unsqueeze(1) + mu * u], dim=1)  # (B, q+1, d)
    losses, calls = _evaluate(loss_fn, points, chunk)
    l0 = losses[:, 0]
    diff = (losses[:, 1:] - l0.unsqueeze(1)) / mu  # (B, q)
    grad = (d / q) * torch.einsum("bq,bqd->bd", diff, u)
    return ZOEstimate(grad, l0, b * (q + 1), calls)


@torch.no_grad()
def cge(loss_fn: LossFn, w: Tensor, *, mu: float = 0.005, difference: Difference = "central",
        chunk: int | None = None) -> ZOEstimate:
    """Coordinate-wise gradient estimate (deterministic).

    Args:
        loss_fn: ``(B, P, d) -> (B, P)`` per-sample losses; every row is one query.
        w: ``(B, d)`` points.
        mu: finite-difference step.
        difference: ``"forward"`` (paper Eq. 4, ``d + 1`` probes, O(mu) error) or ``"central"``
            (reference code, ``2 d`` probes, O(mu^2) error).
        chunk: at most this many probe points per ``loss_fn`` call (None: a single call).

    Returns:
        :class:`ZOEstimate` with ``queries == B * (d + 1)`` (forward) or ``B * 2 d`` (central).
    """
    _check(w, mu)
    if difference not in ("forward", "central"):
        raise InputError(f"difference must be 'forward' or 'central', got {difference!r}")
    b, d = w.shape
    eye = torch.eye(d, dtype=w.dtype, device=w.device).unsqueeze(0)  # (1, d, d)
    base = w.unsqueeze(1)
    if difference == "forward":
        points = torch.cat([base, base + mu * eye], dim=1)  # (B, d+1, d)
        losses, calls = _evaluate(loss_fn, points, chunk)
        l0 = losses[:, 0]
        grad = (losses[:, 1:] - l0.unsqueeze(1)) / mu
        return ZOEstimate(grad, l0, b * (d + 1), calls)
    points = torch.cat([base + mu * eye, base - mu * eye], dim=1)  # (B, 2d, d)
    losses, calls = _evaluate(loss_fn, points, chunk)
    grad = (losses[:, :d] - losses[:, d:]) / (2 * mu)
    return ZOEstimate(grad, torch.full((b,), float("nan"), dtype=w.dtype, device=w.device), 2 * b * d, calls)


def estimate(method: str, loss_fn: LossFn, w: Tensor, *, q: int = 192, mu: float = 0.005,
             difference: Difference = "central", generator: torch.Generator | None = None,
             chunk: int | None = None) -> ZOEstimate:
    """Dispatch to :func:`rge` or :func:`cge` by name (``"rge"`` | ``"cge"``)."""
    if method == "rge":
        return rge(loss_fn, w, q=q, mu=mu, generator=generator, chunk=chunk)
    if method == "cge":
        return cge(loss_fn, w, mu=mu, difference=difference, chunk=chunk)
    raise InputError(f"unknown zeroth-order method {method!r}; choose one of: {', '.join(ZO_METHODS)}")


def surrogate_loss(w: Tensor, grad: Tensor) -> Tensor:
    """Paper Eq. 8: ``mean_b <w_b, a_b>`` with ``a = grad`` detached.

    Back-propagating this scalar through ``w = Enc(D(x + delta))`` gives, by the chain rule,
    the (estimated) gradient of ``mean_b l_b`` with respect to the white-box parameters.
    Shapes: ``w`` and ``grad`` ``(B, d)`` -> scalar.
    """
    if w.shape != grad.shape:
        raise InputError(f"w and grad must have the same shape, got {tuple(w.shape)} and {tuple(grad.shape)}")
    return (w * grad.detach()).sum(dim=1).mean()
