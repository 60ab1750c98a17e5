"""Functional projected gradient descent (Madry et al. 2018), shared by adversarial training and
the ``pgd`` attack.

Objective: maximise the cross-entropy of ``module(x + delta)`` over ``||delta||_p <= eps`` and
``x + delta`` in [0, 1], by ``steps`` steps of size ``step_size`` along the sign of the gradient
(linf), the normalised gradient (l2), or the top-``sparsity`` coordinates of the gradient (l1,
Tramer & Boneh 2019's sparse l1 descent), each followed by projection.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Norm = Literal["linf", "l2", "l1"]


def _flat_norm(t: Tensor, p: float) -> Tensor:
    return t.flatten(1).norm(p=p, dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


def project_l1(delta: Tensor, eps: float) -> Tensor:
    """Euclidean projection of each row of ``delta`` onto the l1 ball of radius ``eps`` (Duchi et al. 2008).

    Shape: ``(N, ...)`` -> same.
    """
    flat = delta.flatten(1)
    abs_ = flat.abs()
    inside = abs_.sum(dim=1) <= eps
    mu, _ = abs_.sort(dim=1, descending=True)
    cums = mu.cumsum(dim=1)
    ks = torch.arange(1, flat.shape[1] + 1, device=flat.device, dtype=flat.dtype)
    cond = mu - (cums - eps) / ks > 0
    rho = cond.float().cumsum(dim=1).argmax(dim=1, keepdim=True)  # last index where cond holds
    theta = (cums.gather(1, rho) - eps) / (rho.to(flat.dtype) + 1)
    proj = flat.sign() * (abs_ - theta).clamp_min(0)
    out = torch.where(inside.unsqueeze(1), flat, proj)
    return out.view_as(delta)


def project(delta: Tensor, eps: float, norm: Norm) -> Tensor:
    """Project ``delta`` onto the ``norm`` ball of radius ``eps`` (per example)."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    if norm == "l2":
        return delta * (eps / _flat_norm(delta, 2)).clamp(max=1.0)
    return project_l1(delta, eps)


def random_init(x: Tensor, eps: float, norm: Norm, generator: torch.Generator) -> Tensor:
    """A random start inside the ball (uniform per coordinate for linf, scaled Gaussian direction otherwise)."""
    if norm == "linf":
        return (torch.rand(x.shape, generator=generator, device=x.device) * 2 - 1) * eps
    d = torch.randn(x.shape, generator=generator, device=x.device)
    p = 2.0 if norm == "l2" else 1.0
    r = torch.rand((x.shape[0],), generator=generator, device=x.device).view(-1, *([1] * (x.dim() - 1)))
    return d / _flat_norm(d, p) * eps * r


def steepest_step(grad: Tensor, norm: Norm, alpha: float | Tensor, sparsity: float = 0.99) -> Tensor:
    """The ascent step of size ``alpha`` (a float or a per-example ``(N, 1, ..., 1)`` tensor) along ``grad``.

    linf: ``alpha sign(grad)``; l2: ``alpha grad / ||grad||_2``; l1: the sign of the top
    ``1 - sparsity`` fraction of coordinates by ``|grad|``, scaled to l1 norm ``alpha`` (SLIDE).

    Shape: ``(N, ...)`` -> same.
    """
    if norm == "linf":
        return alpha * grad.sign()
    if norm == "l2":
        return alpha * grad / _flat_norm(grad, 2)
    flat = grad.flatten(1).abs()
    k = max(1, round((1 - sparsity) * flat.shape[1]))
    thresh = flat.topk(k, dim=1).values[:, -1:].view(-1, *([1] * (grad.dim() - 1)))
    s = grad.sign() * (grad.abs() >= thresh).to(grad.dtype)
    return alpha * s / _flat_norm(s, 1)


def pgd_perturb(module: nn.Module, x: Tensor, y: Tensor, *, eps: float, norm: Norm = "linf", steps: int = 10,
                step_size: float | None = None, random_start: bool = True, targeted: bool = False,
                sparsity: float = 0.99, generator: torch.Generator | None = None) -> Tensor:
    """Return adversarial examples ``x + delta`` (no grad, detached) against ``module``.

    Args:
        module: differentiable classifier, ``(N, C, H, W)`` in [0, 1] -> logits.
        y: true labels (untargeted) or target labels (``targeted=True``).
        step_size: defaults to ``2.5 * eps / steps`` (Madry et al.).
        sparsity: for l1, the fraction of coordinates *not* moved per step (SLIDE's q = 99%).

    Shape: ``x`` ``(N, C, H, W)``, ``y`` ``(N,)`` -> ``(N, C, H, W)`` in [0, 1].
    """
    alpha = step_size if step_size is not None else 2.5 * eps / steps
    x = x.detach()
    if random_start:
        g = generator if generator is not None else torch.Generator(device=x.device).manual_seed(0)
        delta = project(random_init(x, eps, norm, g), eps, norm)
    else:
        delta = torch.zeros_like(x)
    delta = ((x + delta).clamp(0, 1) - x).detach()
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(module(x + delta), y)
        (grad,) = torch.autograd.grad(-loss if targeted else loss, delta)
        with torch.no_grad():
            delta = project(delta + steepest_step(grad, norm, alpha, sparsity), eps, norm)
            delta = ((x + delta).clamp(0, 1) - x).detach()
    return (x + delta).detach()
