"""KnockoffNets: exact budget, determinism, and (slow) real stealing of the MNIST target."""

from __future__ import annotations

import pytest
import torch
from _attacks2_helpers import SHAPE, multiclass_model

from bbdefense.attacks.knockoff import knockoff_steal
from bbdefense.data import ImageDataset
from bbdefense.errors import InputError
from bbdefense.models import BlackBox


def _transfer(n: int = 160) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, *SHAPE, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return ImageDataset("rand", x, y, [str(i) for i in range(10)], (0.5,) * 3, (0.29,) * 3)


@pytest.mark.parametrize(("strategy", "output"), [("random", "probs"), ("adaptive", "label"),
                                                  ("adaptive", "logits")])
def test_knockoff_spends_exactly_its_budget(strategy: str, output: str) -> None:
    victim = BlackBox.from_module(multiclass_model(), input_shape=SHAPE, output=output)  # type: ignore[arg-type]
    res = knockoff_steal(victim, _transfer(), arch="smallcnn", budget=70, strategy=strategy,  # type: ignore[arg-type]
                         reward="all", epochs=1, batch_size_query=32, eval_set=_transfer(40))
    assert res.queries == 70 and victim.stats.queries == 70 and sum(res.class_counts) == 70
    assert victim.stats.audit_queries == 40  # agreement is measured with uncharged audit queries
    assert res.agreement is not None and 0.0 <= res.agreement <= 1.0
    assert not res.model.training


def test_knockoff_same_seed_same_model() -> None:
    outs = []
    for _ in range(2):
        victim = BlackBox.from_module(multiclass_model(), input_shape=SHAPE, output="probs")
        res = knockoff_steal(victim, _transfer(), arch="smallcnn", budget=40, strategy="adaptive", reward="cert",
                             epochs=1, seed=3)
        outs.append((res.class_counts, [p.detach().clone() for p in res.model.parameters()]))
    assert outs[0][0] == outs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(outs[0][1], outs[1][1], strict=True))


def test_knockoff_rejects_budget_above_transfer_set() -> None:
    victim = BlackBox.from_module(multiclass_model(), input_shape=SHAPE)
    with pytest.raises(InputError, match=r"budget must be an int in \[1, 160\].*got 1000"):
        knockoff_steal(victim, _transfer(), budget=1000)
    with pytest.raises(InputError, match="strategy must be 'random' or 'adaptive', got 'greedy'"):
        knockoff_steal(victim, _transfer(), budget=10, strategy="greedy")  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["random", "adaptive"])
def test_knockoff_steals_mnist_target_well_above_chance(strategy: str, trained_smallcnn, mnist_splits) -> None:
    from bbdefense.models import load_checkpoint

    module, _meta = load_checkpoint(trained_smallcnn[0])
    victim = BlackBox.from_module(module, input_shape=(1, 28, 28), output="probs", budget=500)
    res = knockoff_steal(victim, mnist_splits.defender, arch="lenet", budget=500, strategy=strategy,  # type: ignore[arg-type]
                         epochs=8, eval_set=mnist_splits.test, seed=0)
    assert victim.stats.queries == 500
    assert res.agreement is not None and res.agreement > 0.6  # chance is ~0.1 on 10 balanced classes


def test_steal_result_saves_a_loadable_checkpoint(tmp_path) -> None:
    from bbdefense.models import load_blackbox

    victim = BlackBox.from_module(multiclass_model(), input_shape=SHAPE, output="probs")
    res = knockoff_steal(victim, _transfer(), arch="smallcnn", budget=32, epochs=1, eval_set=_transfer(20))
    res.save(tmp_path / "stolen")
    bb = load_blackbox(tmp_path / "stolen")
    x = _transfer(5).x
    with torch.no_grad():
        assert torch.allclose(bb.query(x), res.model(x), atol=1e-5)


def test_steal_cli_missing_model_exits_2(tmp_path) -> None:
    from bbdefense.cli import main

    assert main(["steal", "--model", str(tmp_path / "missing"), "--no-progress"]) == 2
