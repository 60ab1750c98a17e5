"""An attack run on an owner-side defense does not depend on the runs before it: the evaluation
restarts the defense (random stream and query-to-query state, nested defenses too) before each run,
so a resumed run directory that skips earlier cells gives the uninterrupted run's rows."""

from __future__ import annotations

import torch

from bbdefense.defenses import RandomNoiseDefense, UniG
from bbdefense.evaluation.attacks import attack_blackbox
from bbdefense.evaluation.owner import EvalConfig, run_attack
from bbdefense.models import build_model


def _net() -> torch.nn.Module:
    torch.manual_seed(0)  # test-local weights; library code never seeds globally
    return build_model("smallcnn", num_classes=10, in_channels=1, image_size=8).eval()


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand((6, 1, 8, 8), generator=g), torch.randint(0, 10, (6,), generator=g)


CFG = EvalConfig(eps=0.3, criterion="single")


def test_unig_row_does_not_depend_on_earlier_runs() -> None:
    x, y = _data()
    fresh = UniG(_net(), lr=1.0, delta=0.2, seed=0)
    row_fresh = run_attack(fresh, "simba", x, y, budget=40, cfg=CFG, defense_name="unig")
    used = UniG(_net(), lr=1.0, delta=0.2, seed=0)
    used(torch.rand((6, 1, 8, 8)))  # earlier traffic leaves momentum behind
    run_attack(used, "square", x, y, budget=30, cfg=CFG, defense_name="unig")
    assert used.momentum_buffer is not None
    row_after = run_attack(used, "simba", x, y, budget=40, cfg=CFG, defense_name="unig")
    assert (row_after.robust_accuracy, row_after.queries) == (row_fresh.robust_accuracy, row_fresh.queries)


def test_a_run_starts_from_the_deployed_state() -> None:
    """The first answers of a run are the fresh defense's, whatever traffic came before (UniG's momentum)."""
    x, _ = _data()
    kw = {"num_classes": 10, "input_shape": (1, 8, 8), "reseed": 0}
    fresh = UniG(_net(), lr=1.0, delta=0.2, seed=0)
    want = attack_blackbox(fresh, "simba", **kw)(x)  # type: ignore[arg-type]
    used = UniG(_net(), lr=1.0, delta=0.2, seed=0)
    for _ in range(3):
        used(torch.rand((6, 1, 8, 8)))
    assert torch.equal(attack_blackbox(used, "simba", **kw)(x), want)  # type: ignore[arg-type]


def test_restart_reaches_nested_defenses() -> None:
    inner = UniG(_net(), lr=1.0, delta=0.2, seed=3)
    outer = RandomNoiseDefense(inner, nu=0.05, seed=0)
    x = torch.rand((4, 1, 8, 8))
    outer.restart(0)
    first = outer(x)
    outer(x)  # advances both streams and the inner momentum
    assert inner.momentum_buffer is not None
    outer.restart(0)
    assert inner.momentum_buffer is None
    assert torch.equal(outer(x), first)
