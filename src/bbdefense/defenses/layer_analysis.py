"""RFD's per-layer analysis (Nguyen et al., ICLR 2024, §3.3-3.5, Figures 1-2, Table 6): which layer
to randomize.

Theorem 1: with defense noise ``N(0, nu^2 I)`` on ``h(x)`` and attack probes of size ``mu`` on ``x``,
the probability that a score-based attacker takes the wrong action grows with

    ``(nu / mu) * ||grad_{h(x)} L|| / ||grad_x L||``      (std units; the paper writes variances)

so for each candidate layer we measure, per example, ``r = ||grad_h L||_2 / ||grad_x L||_2`` with
``L`` = cross-entropy at the true label,

* on the clean inputs and after one signed-gradient ascent step of size ``step`` (the paper's
  "simulated attacker": ratios grow as inputs move toward adversarial examples, Figure 1);
* and, when the noise level ``nu_l`` calibrated to the same clean-accuracy drop is given, the
  **robustness index** ``nu_l * median(r)`` (input noise = RND has r = 1, index ``nu_input``). The layer
  with the largest index is the one the theory recommends at equal clean-accuracy cost (§3.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from .rfd import resolve_layers


@dataclass
class LayerRatios:
    """Per-example gradient-norm ratios at one layer: ``before`` / ``after`` the gradient step ``(N,)``."""

    layer: str
    site: str
    before: Tensor
    after: Tensor

    def summary(self) -> dict[str, Any]:
        return {"layer": self.layer, "site": self.site,
                "median_before": float(self.before.median()), "median_after": float(self.after.median()),
                "mean_before": float(self.before.mean()), "mean_after": float(self.after.mean()),
                "frac_increased": float((self.after > self.before).float().mean())}


def _ratios(module: nn.Module, x: Tensor, y: Tensor, sites: Sequence[tuple[str, str]]) -> tuple[list[Tensor], Tensor]:
    """Per-example ``||grad_h L||`` for each site and ``grad_x L`` (``(N, C, H, W)``)."""
    named = dict(module.named_modules())
    captured: list[Tensor | None] = [None] * len(sites)
    handles = []

    def make(i: int, where: str):
        def post(_m: nn.Module, _inp: tuple[Tensor, ...], out: Tensor) -> None:
            out.retain_grad()
            captured[i] = out

        def pre(_m: nn.Module, inp: tuple[Tensor, ...]) -> None:
            inp[0].retain_grad()
            captured[i] = inp[0]

        return post if where == "after" else pre

    for i, (qual, where) in enumerate(sites):
        fn = make(i, where)
        handles.append(named[qual].register_forward_hook(fn) if where == "after"
                       else named[qual].register_forward_pre_hook(fn))
    try:
        with torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)
            # sum reduction: example i's gradient at its own features is that of its own loss
            loss = F.cross_entropy(module(xg), y, reduction="sum")
            loss.backward()
    finally:
        for h in handles:
            h.remove()
    norms = []
    for (qual, _), h in zip(sites, captured, strict=True):
        if h is None or h.grad is None:
            raise InputError(f"layer {qual!r} was not reached by the forward pass or has no gradient")
        norms.append(h.grad.flatten(1).norm(dim=1).detach())
    module.zero_grad(set_to_none=True)
    if xg.grad is None:
        raise InputError("the module's loss does not depend on its input: no input gradient to compare with")
    return norms, xg.grad.detach()


def gradient_ratios(module: nn.Module, x: Tensor, y: Tensor, layers: Sequence[str], *, step: float = 0.03,
                    batch_size: int = 250) -> list[LayerRatios]:
    """``||grad_h L|| / ||grad_x L||`` per example and layer, before and after one linf signed-gradient
    ascent step of size ``step`` on ``x`` (clipped to [0, 1]).

    Args:
        module: the owner's undefended model.
        x, y: images ``(N, C, H, W)`` in [0, 1] and labels ``(N,)``.
        layers: paper layer names or module names (see :func:`bbdefense.defenses.rfd.paper_layers`).
        step: the simulated attacker's step (pixel units).
    """
    if x.dim() != 4 or y.shape != (x.shape[0],):
        raise InputError(f"expected images (N, C, H, W) and labels (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
    sites = resolve_layers(module, list(layers))
    was_training = module.training
    module.eval()
    before: list[list[Tensor]] = [[] for _ in sites]
    after: list[list[Tensor]] = [[] for _ in sites]
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        hn, gx = _ratios(module, xb, yb, sites)
        gxn = gx.flatten(1).norm(dim=1).clamp_min(1e-30)
        x2 = (xb + step * gx.sign()).clamp(0, 1)
        hn2, gx2 = _ratios(module, x2, yb, sites)
        gxn2 = gx2.flatten(1).norm(dim=1).clamp_min(1e-30)
        for j in range(len(sites)):
            before[j].append(hn[j] / gxn)
            after[j].append(hn2[j] / gxn2)
    module.train(was_training)
    return [LayerRatios(name, f"{where} {qual}", torch.cat(b), torch.cat(a))
            for name, (qual, where), b, a in zip(layers, sites, before, after, strict=True)]


def layer_table(ratios: list[LayerRatios], nus: dict[str, float] | None = None,
                input_nu: float | None = None) -> tuple[list[str], list[list[Any]], str | None]:
    """Rows of the layer-analysis table and the recommended layer (largest robustness index).

    ``nus`` maps a layer to its noise level calibrated to the common accuracy drop; ``input_nu`` adds
    the RND row (ratio 1). Returns ``(columns, rows, best layer or None)``.
    """
    cols = ["layer", "site", "median ratio (clean)", "median ratio (after step)", "frac increased",
            "nu at target drop", "robustness index nu*median ratio (clean)"]
    rows: list[list[Any]] = []
    best, best_idx = None, -1.0
    if input_nu is not None:
        rows.append(["input (RND)", "input pixels", 1.0, 1.0, None, input_nu, input_nu])
        best, best_idx = "input", input_nu
    for r in ratios:
        s = r.summary()
        nu = (nus or {}).get(r.layer)
        idx = nu * s["median_before"] if nu is not None else None
        rows.append([r.layer, r.site, s["median_before"], s["median_after"], s["frac_increased"], nu, idx])
        if idx is not None and idx > best_idx:
            best, best_idx = r.layer, idx
    return cols, rows, best


__all__ = ["LayerRatios", "gradient_ratios", "layer_table"]
