"""Randomized Feature Defense (RFD): Gaussian noise on hidden features of chosen layers.

Nguyen, Lao, Pham, Wong, Doan, "Understanding the Robustness of Randomized Feature Defense Against
Query-Based Adversarial Attacks", ICLR 2024 (Algorithm 1). Reference code: mail-research/randomized_defenses
(commit 2279838), ``models/utils.py`` ``add_defense`` and ``models/wrapper.py``; this is an independent
implementation with forward hooks on any torch module.

For each chosen layer ``h_l`` the defended forward computes ``z_l = h_l(z_{l-1}) + nu * N(0, I)`` (a
fresh draw per query and per image). By Theorem 1 of the paper, the probability that a score-based
attacker takes the wrong action grows with ``(nu / mu) * ||grad_h L|| / ||grad_x L||`` (mu = the
attacker's probe size), so the layer is picked with the gradient-norm analysis in
:mod:`bbdefense.defenses.layer_analysis` and ``nu`` is calibrated to a clean-accuracy drop with
:func:`bbdefense.defenses.calibrate.calibrate_noise` (the paper's protocol: ~1% or ~2%).

Layer names (see :func:`paper_layers`), as in the paper and the reference code:

* ResNet-like modules (children ``layer1`` .. ``layer4``): ``stage0`` = after the stem (before
  ``layer1``), ``stage{i}`` = after ``layer{i}``.
* ViT/Mixer-like modules (a ``blocks`` list): ``block{i}`` = before block ``i`` (0-based).
* VGG-like / any sequential body: ``conv{c}`` = before the ``c``-th ``Conv2d`` (1-based).
* Zoo classifiers with a sequential ``body`` (SmallCNN, LeNet): ``stage{i}`` = after the ``i``-th
  down-sampling layer (pooling), ``penultimate`` = the body's output (the features before ``head``).

Any qualified module name from ``module.named_modules()`` (e.g. ``body.4``) is accepted too, meaning
"after that module".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from ..certify import make_noise
from ..errors import InputError
from .base import Defense, check_positive, register_defense, unwrap

Where = Literal["after", "before"]


def paper_layers(module: nn.Module) -> dict[str, tuple[str, Where]]:
    """Paper-style layer names of ``module`` -> ``(qualified module name, "after" | "before")``.

    Shape-agnostic: only module names and types are inspected.
    """
    out: dict[str, tuple[str, Where]] = {}
    named = dict(unwrap(module).named_modules())
    prefix = "module." * _depth(module)
    for qual, mod in named.items():
        kids = dict(mod.named_children())
        if all(f"layer{i}" in kids for i in (1, 2, 3)):  # ResNet-like
            base = f"{qual}." if qual else ""
            out["stage0"] = (prefix + base + "layer1", "before")
            for i in range(1, 5):
                if f"layer{i}" in kids:
                    out[f"stage{i}"] = (prefix + base + f"layer{i}", "after")
        if "blocks" in kids and isinstance(kids["blocks"], (nn.ModuleList, nn.Sequential)):
            base = f"{qual}.blocks" if qual else "blocks"
            for i in range(len(kids["blocks"])):
                out[f"block{i}"] = (prefix + f"{base}.{i}", "before")
    body = named.get("body")
    convs = [(q, m) for q, m in named.items() if isinstance(m, nn.Conv2d)]
    for c, (q, _) in enumerate(convs, start=1):
        out.setdefault(f"conv{c}", (prefix + q, "before"))
    if isinstance(body, nn.Sequential) and not any(k.startswith("stage") for k in out):
        stage = 0
        for q, m in body.named_children():
            if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
                stage += 1
                out[f"stage{stage}"] = (prefix + f"body.{q}", "after")
    if body is not None:
        out["penultimate"] = (prefix + "body", "after")
    return out


def _depth(module: nn.Module) -> int:
    d = 0
    while isinstance(module, Defense):
        module, d = module.module, d + 1
    return d


def resolve_layers(module: nn.Module, layers: Sequence[str]) -> list[tuple[str, Where]]:
    """Turn paper names or qualified module names into ``(qualified name, where)`` pairs.

    Raises:
        InputError: a name that is neither a paper name of this module nor one of its modules.
    """
    if isinstance(layers, str):
        layers = [layers]
    if not layers:
        raise InputError("rfd: at least one layer is needed, got an empty list")
    aliases = paper_layers(module)
    named = dict(module.named_modules())
    out: list[tuple[str, Where]] = []
    for name in layers:
        if name in aliases:
            out.append(aliases[name])
        elif name in named and name != "":
            out.append((name, "after"))
        else:
            choices = ", ".join(list(aliases)[:24])
            raise InputError(f"rfd: unknown layer {name!r} for {type(unwrap(module)).__name__}; paper names: "
                             f"{choices or '(none)'}; or a module name from named_modules()")
    return out


@register_defense
class RandomizedFeatureDefense(Defense):
    """RFD: ``h_l <- h_l + nu * N(0, I)`` at each chosen layer, fresh noise per query.

    Args:
        module: the owner's model (``(N, C, H, W)`` in [0, 1] -> ``(N, K)``).
        layers: layer names (paper names from :func:`paper_layers` or qualified module names). The
            default ``"penultimate"`` needs a zoo classifier; pick with the layer analysis.
        nu: noise standard deviation in the layer's feature units (calibrate it; the paper reports
            the value giving a ~1% / ~2% clean-accuracy drop).
        seed: seed of the defense's generator.

    Shape: ``(N, C, H, W)`` -> logits ``(N, K)``.
    """

    name = "rfd"
    randomized = True

    def __init__(self, module: nn.Module, *, layers: Sequence[str] | str = ("penultimate",), nu: float = 0.1,
                 seed: int | None = 0) -> None:
        super().__init__(module, seed=seed)
        self.layers = [layers] if isinstance(layers, str) else list(layers)
        self.nu = check_positive("rfd: nu", nu, allow_zero=True)
        self._targets = resolve_layers(self.module, self.layers)
        self._active = False
        self._handles: list[RemovableHandle] = []
        named = dict(self.module.named_modules())
        for qual, where in self._targets:
            mod = named[qual]
            if where == "after":
                self._handles.append(mod.register_forward_hook(self._post_hook))
            else:
                self._handles.append(mod.register_forward_pre_hook(self._pre_hook))

    @property
    def targets(self) -> list[tuple[str, Where]]:
        """The resolved ``(qualified module name, "after" | "before")`` noise sites."""
        return list(self._targets)

    def _noise(self, h: Tensor) -> Tensor:
        if not isinstance(h, Tensor):
            raise InputError(f"rfd: layer output is a {type(h).__name__}, not a tensor; choose another layer")
        if self.nu == 0:
            return h
        g = self.generator(h.device)
        return h + make_noise("gaussian", sigma=self.nu).sample(h.shape, g, dtype=h.dtype)

    def _post_hook(self, mod: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor | None:
        return self._noise(output) if self._active else None

    def _pre_hook(self, mod: nn.Module, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...] | None:
        if not self._active:
            return None
        return (self._noise(inputs[0]), *inputs[1:])

    def defend(self, x: Tensor) -> Tensor:
        self._active = True
        try:
            return self.inner(x)
        finally:
            self._active = False

    def remove(self) -> None:
        """Detach the hooks from the owner's module (the defense is unusable afterwards)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()


__all__ = ["RandomizedFeatureDefense", "paper_layers", "resolve_layers"]
