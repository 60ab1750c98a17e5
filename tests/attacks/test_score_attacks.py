"""Behaviour of the score attacks beyond the registry contract: query counting per reference,
per-image randomness, targeted runs, probs oracles, the randomized-model criterion, errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch
from attack_helpers import SHAPE, Linear, build, images, linear10

from bbdefense.attacks import ATTACKS
from bbdefense.attacks.simba import block_idct
from bbdefense.attacks.square import Square, p_selection
from bbdefense.errors import InputError
from bbdefense.models import BlackBox

SCORE = ["bandits", "nes", "signhunter", "simba", "square"]


def robust_model() -> Linear:
    """Class 0 wins by a margin no eps <= 0.3 can overturn: attacks spend their whole budget."""
    w = torch.zeros(10, 64)
    b = torch.zeros(10)
    b[0] = 1000.0
    return Linear(w, b)


def test_p_selection_schedule_is_rescaled_to_n_iters() -> None:
    assert p_selection(0.8, 0, 10_000) == 0.8
    assert p_selection(0.8, 11, 10_000) == 0.4
    assert p_selection(0.8, 9999, 10_000) == pytest.approx(0.8 / 512)
    # with 100 iterations every stage is passed (pitfall 13): iteration 1 is it'=100 -> /4
    assert p_selection(0.8, 1, 100) == 0.2
    assert p_selection(0.8, 99, 100) == pytest.approx(0.8 / 512)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_square_one_query_at_init_and_one_per_iteration(norm: str) -> None:
    bb = BlackBox.from_module(robust_model(), input_shape=SHAPE)
    x = images(5)
    res = Square(norm=norm, eps=0.3, max_queries=40).run(bb, x, torch.zeros(5, dtype=torch.long))
    assert res.queries.tolist() == [40] * 5
    assert bb.stats.calls == 40  # one batched call per iteration (ART: 3 per iteration)
    assert res.audit_queries == 0 and not res.success.any()


def test_square_draws_one_square_per_image() -> None:
    sq = Square(eps=0.2, max_queries=10)

    class _Led:
        g = torch.Generator().manual_seed(0)

    x = torch.full((16, 1, 8, 8), 0.5)
    new = sq._step_linf(_Led(), x, x.clone(), p=0.1, eps=0.2)  # type: ignore[arg-type]
    changed = (new - x).abs().gt(0).flatten(1)
    assert bool((changed.sum(1) > 0).all())
    assert len({tuple(r.tolist()) for r in changed}) > 4  # positions differ across images


def test_square_stops_each_image_at_success() -> None:
    bb = BlackBox.from_module(linear10(), input_shape=SHAPE)
    x = images(8)
    y = linear10()(x).argmax(1).detach()
    res = Square(eps=0.3, max_queries=500).run(bb, x, y)
    assert res.success.all()
    assert res.queries.max() < 500 and len(set(res.queries.tolist())) > 1


def test_block_idct_matches_scipy_orthonormal_idct() -> None:
    z = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    ref = scipy.fft.idctn(z.numpy().astype(np.float64), axes=(2, 3), norm="ortho")
    assert np.allclose(block_idct(z).numpy(), ref, atol=1e-5)
    ref4 = scipy.fft.idctn(z[:, :, :4, 4:].numpy().astype(np.float64), axes=(2, 3), norm="ortho")
    assert np.allclose(block_idct(z, 4)[:, :, :4, 4:].numpy(), ref4, atol=1e-5)


@pytest.mark.parametrize("basis", ["pixel", "dct"])
def test_simba_spends_one_or_two_queries_per_coordinate(basis: str) -> None:
    bb = BlackBox.from_module(robust_model(), input_shape=SHAPE)
    x = images(4)
    res = ATTACKS["simba"](basis=basis, eps=0.2, norm="linf", max_queries=10_000).run(
        bb, x, torch.zeros(4, dtype=torch.long))
    # one pass over the 64 coordinates: the score never moves, so both directions are tried
    assert res.queries.tolist() == [128] * 4
    assert res.audit_queries == 4  # p_y(x) at the start, uncounted as in the reference


@pytest.mark.parametrize("name", SCORE)
def test_score_attack_targeted_reaches_the_target(name: str) -> None:
    module = linear10()
    bb = BlackBox.from_module(module, input_shape=SHAPE)
    x = images(6)
    y = module(x).argmax(1).detach()
    target = (y + 3) % 10
    over = {"simba": {"basis": "pixel", "step": 1.0},
            "bandits": {"tile_size": 8, "image_lr": 0.05, "online_lr": 1.0}}.get(name, {})
    res = build(name, eps=0.5, max_queries=400, **over).run(bb, x, y, target=target)
    assert res.extra["targeted"]
    with torch.no_grad():
        pred = module(res.x_adv).argmax(1)
    assert torch.equal(res.success, pred.eq(target))
    assert res.success.float().mean() >= 0.5


@pytest.mark.parametrize("name", SCORE)
def test_score_attack_same_run_on_logits_or_probs_oracle(name: str) -> None:
    module = linear10()
    x = images(6)
    y = module(x).argmax(1).detach()
    runs = []
    for output in ("logits", "probs"):
        bb = BlackBox.from_module(module, input_shape=SHAPE, output=output)  # type: ignore[arg-type]
        runs.append(build(name, max_queries=100).run(bb, x, y))
    assert torch.equal(runs[0].success, runs[1].success)
    assert (runs[0].queries - runs[1].queries).abs().max() <= 2


def _noisy_model(sigma: float) -> BlackBox:
    module = linear10()
    g = torch.Generator().manual_seed(123)

    def fn(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = module(x)
        return out + sigma * torch.randn(out.shape, generator=g)

    return BlackBox.from_callable(fn, returns="logits", num_classes=10, input_shape=SHAPE, randomized=True)


@pytest.mark.parametrize("criterion,k,audits", [("fooled_once", 9, 0), ("single", 9, 6), ("majority", 5, 30)])
def test_criterion_on_randomized_model_is_recorded_and_audited(criterion: str, k: int, audits: int) -> None:
    bb = _noisy_model(2.0)
    x = images(6)
    y = linear10()(x).argmax(1).detach()
    res = Square(eps=0.1, max_queries=50, criterion=criterion, k=k).run(bb, x, y)
    assert res.criterion == (f"majority@{k}" if criterion == "majority" else criterion)
    assert res.audit_queries == audits == bb.stats.audit_queries
    assert int(res.queries.sum()) == bb.stats.queries


def test_criterion_majority_is_stricter_than_fooled_once() -> None:
    x = images(16)
    y = linear10()(x).argmax(1).detach()
    once = Square(eps=0.05, max_queries=100, criterion="fooled_once").run(_noisy_model(3.0), x, y)
    maj = Square(eps=0.05, max_queries=100, criterion="majority", k=9).run(_noisy_model(3.0), x, y)
    assert once.success.sum() > maj.success.sum()


@pytest.mark.parametrize("kw,msg", [
    ({"norm": "l1"}, r"norm must be one of linf, l2, got 'l1'"),
    ({"eps": -0.1}, r"eps must be > 0 for norm='linf', got -0.1"),
    ({"max_queries": 0}, r"max_queries must be an int >= 1, got 0"),
    ({"criterion": "twice"}, r"criterion must be one of single, majority, fooled_once, fast_exp, got 'twice'"),
    ({"k": 0}, r"k \(re-queries for criterion='majority'\) must be >= 1, got 0"),
])
@pytest.mark.parametrize("name", SCORE)
def test_score_attack_bad_hyperparameter_raises_naming_it(name: str, kw: dict, msg: str) -> None:
    bb = BlackBox.from_module(linear10(), input_shape=SHAPE)
    with pytest.raises(InputError, match=f"^{name}: {msg}$"):
        build(name, **kw).run(bb, images(2), torch.zeros(2, dtype=torch.long))
    assert bb.stats.queries == 0


def test_attack_rejects_bad_target_labels() -> None:
    bb = BlackBox.from_module(linear10(), input_shape=SHAPE)
    with pytest.raises(InputError, match=r"target labels must be in \[0, 10\)"):
        Square().run(bb, images(2), torch.zeros(2, dtype=torch.long), target=torch.tensor([1, 10]))


def test_empty_batch_gives_empty_result() -> None:
    bb = BlackBox.from_module(linear10(), input_shape=SHAPE)
    res = Square().run(bb, torch.zeros(0, *SHAPE), torch.zeros(0, dtype=torch.long))
    assert res.x_adv.shape == (0, *SHAPE) and bb.stats.queries == 0
