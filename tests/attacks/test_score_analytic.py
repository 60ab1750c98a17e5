"""Analytic tests of the score attacks on binary linear classifiers with known minimal distances.

``f(x) = w.x + b`` (class 1 iff f > 0). Images are built at a chosen linf (or l2) distance ``d``
from the boundary, with the [0, 1] box not binding, so the true minimal distance is exactly
``|f(x)| / ||w||_1`` (linf) or ``|f(x)| / ||w||_2`` (l2). Every attack must never succeed when
``eps`` is below it; ours must succeed when ``eps`` exceeds it by 25% (linf) / 50-100% (l2).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from attack_helpers import SHAPE, Linear, build

from bbdefense.attacks import ATTACKS
from bbdefense.models import BlackBox

DISTS = [0.03, 0.05, 0.07, 0.08, 0.12, 0.15, 0.2]
EPS = 0.1

# Settings that reach the optimum of a linear problem within the budget. Bandits runs without
# tiling (tile = image): a tiling prior is constant per tile and cannot match a random w.
LINF: dict[str, dict[str, Any]] = {
    "square": {"max_queries": 300, "p_init": 0.05},
    "nes": {"max_queries": 1500, "lr": 0.005, "q": 10},
    "bandits": {"max_queries": 400, "tile_size": 8, "image_lr": 0.005},
    "signhunter": {"max_queries": 200},
    "simba": {"max_queries": 200, "basis": "pixel", "step": 0.2},
}
# (settings, factor): must succeed when eps >= factor * distance. Square's l2 search moves whole
# 3x3 bumps, coarse on 8x8 images: it gets factor 2.
L2: dict[str, tuple[dict[str, Any], float]] = {
    "square": ({"max_queries": 500}, 2.0),
    "nes": ({"max_queries": 3000, "lr": 0.05}, 1.5),
}


def binary_problem(norm: str, dists: list[float], seed: int = 0, smooth: bool = False
                   ) -> tuple[Linear, torch.Tensor, torch.Tensor]:
    """A binary linear model and images at the given distances (``smooth``: w constant on 2x2 blocks)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(64, generator=g)
    if smooth:
        w = torch.nn.functional.interpolate(w[:16].view(1, 1, 4, 4), size=(8, 8), mode="nearest").flatten()
    model = Linear(torch.stack([torch.zeros(64), w]), torch.tensor([0.0, -float(w.sum()) * 0.5]))
    direction = w.sign() if norm == "linf" else w / w.norm()
    noise = 0.03 * (torch.rand(len(dists), 64, generator=g) - 0.5)
    x = 0.5 + noise - torch.tensor(dists)[:, None] * direction
    # exact distances of the noisy images (f(x) < 0 for all; box constraints do not bind)
    f = x @ w - float(w.sum()) * 0.5
    assert bool((f < 0).all())
    true = -f / (w.abs().sum() if norm == "linf" else w.norm())
    return model, x.view(-1, *SHAPE).contiguous(), true


def _run(name: str, norm: str, eps: float, over: dict[str, Any]):
    model, x, true = binary_problem(norm, DISTS)
    bb = BlackBox.from_module(model, input_shape=SHAPE)
    attack = build(name, norm=norm, eps=eps, **over)
    res = attack.run(bb, x, torch.zeros(len(x), dtype=torch.long))
    return res, true


@pytest.mark.parametrize("name", sorted(LINF))
def test_score_attack_linf_succeeds_above_true_distance(name: str) -> None:
    res, true = _run(name, "linf", EPS, LINF[name])
    easy = true * 1.25 <= EPS
    assert int(easy.sum()) >= 3
    assert bool(res.success[easy].all()), f"{name}: failed on distances {true[easy & ~res.success].tolist()}"


@pytest.mark.parametrize("name", sorted(n for n in ATTACKS if ATTACKS[n].access in ("scores", "label")))
def test_any_black_box_attack_never_succeeds_below_true_distance(name: str) -> None:
    for norm in ("linf", "l2"):
        if norm not in ATTACKS[name].norms:
            continue
        eps = EPS if norm == "linf" else 0.5
        model, x, true = binary_problem(norm, [0.12, 0.15, 0.2] if norm == "linf" else [0.6, 0.8, 1.0])
        assert bool((true > eps).all())
        bb = BlackBox.from_module(model, input_shape=SHAPE)
        res = build(name, norm=norm, eps=eps, max_queries=150).run(bb, x, torch.zeros(len(x), dtype=torch.long))
        assert not bool(res.success.any())
        with torch.no_grad():
            assert bool((model(res.x_adv).argmax(1) == 0).all())


@pytest.mark.parametrize("name", sorted(L2))
def test_score_attack_l2_succeeds_above_true_distance(name: str) -> None:
    # Square's l2 bumps are built for natural images: the l2 problem uses a smooth w
    model, x, true = binary_problem("l2", [0.2, 0.3, 0.4, 0.8, 1.0], smooth=True)
    eps = 0.6
    bb = BlackBox.from_module(model, input_shape=SHAPE)
    over, factor = L2[name]
    res = build(name, norm="l2", eps=eps, **over).run(bb, x, torch.zeros(len(x), dtype=torch.long))
    easy = true * factor <= eps
    assert int(easy.sum()) >= 2
    assert bool(res.success[easy].all()), f"{name}: failed on l2 distances {true[easy & ~res.success].tolist()}"
    assert not bool(res.success[true > eps].any())
