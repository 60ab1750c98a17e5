"""Shared pieces of the attack tests: tiny models with known answers and fast attack settings.

Kept out of a conftest so that the decision/white-box attack tests of the other attack module can
live next to these without a file clash.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bbdefense.attacks import ATTACKS, Attack
from bbdefense.models import BlackBox, WhiteBox
from linear_helpers import Linear

SHAPE = (1, 8, 8)

# Small budgets so the whole registry runs in seconds; unknown attacks get COMMON where it applies.
COMMON: dict[str, Any] = {"eps": 0.1, "norm": "linf", "max_queries": 60, "seed": 0}
FAST: dict[str, dict[str, Any]] = {
    "nes": {"q": 5},
    "simba": {"basis": "pixel"},
    # attacks that need more than hyperparameters to be built
    "bpda": {"attack": "apgd", "attack_params": {"eps": 0.1, "steps": 5}},
    "transfer": {"attack_params": {"eps": 0.1, "steps": 5}},
}


def linear10(seed: int = 0) -> Linear:
    g = torch.Generator().manual_seed(seed)
    return Linear(torch.randn(10, 64, generator=g), torch.randn(10, generator=g))


def images(n: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def build(name: str, **over: Any) -> Attack:
    """An attack of the registry with small settings (only the keywords its constructor takes)."""
    cls = ATTACKS[name]
    sig = cls.param_names()
    kw = {k: v for k, v in COMMON.items() if k in sig}
    kw.update({k: v for k, v in FAST.get(name, {}).items() if k in sig})
    kw.update({k: v for k, v in over.items() if k in sig})
    if name == "transfer" and "surrogate" not in kw:
        kw["surrogate"] = linear10(seed=1)  # a different linear model: transfer, not white-box
    return cls(**kw)


def model_for(attack: Attack, module: nn.Module, output: str = "logits") -> BlackBox:
    if attack.name == "bpda":  # BPDA attacks a classifier behind a (here trivial) front end
        from bbdefense.attacks.bpda import Preprocessed

        return WhiteBox(Preprocessed(nn.Identity(), module), input_shape=SHAPE)
    if attack.access == "white":
        return WhiteBox(module, input_shape=SHAPE)
    return BlackBox.from_module(module, input_shape=SHAPE, output=output)  # type: ignore[arg-type]

