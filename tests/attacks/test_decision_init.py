"""Starting points (``x_init``) for decision attacks: targeted HopSkipJump from an image of the target class."""

from __future__ import annotations

import pytest
import torch
from _attacks2_helpers import SHAPE, binary_problem, multiclass_model

from bbdefense.attacks import ATTACKS
from bbdefense.errors import InputError
from bbdefense.evaluation.attacks import starts_of_class
from bbdefense.models import BlackBox


def _pool(model: torch.nn.Module, n: int = 400, seed: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *SHAPE, generator=g)
    with torch.no_grad():
        return x, model(x).argmax(1)


def test_targeted_hsja_from_target_class_images_reaches_the_target() -> None:
    model = multiclass_model(k=10, seed=1)
    pool_x, pool_y = _pool(model)
    x, y = pool_x[:6], pool_y[:6]
    present = sorted(set(pool_y[6:].tolist()))
    assert len(present) >= 3, present
    target = torch.tensor([next(c for c in present[1:] + present if c != int(v)) for v in y])
    starts = starts_of_class(pool_x, pool_y, target, exclude=torch.arange(6))
    bb = BlackBox.from_module(model, input_shape=SHAPE, output="label")
    res = ATTACKS["hsja"](norm="l2", eps=None, max_queries=1500, num_iterations=8).run(
        bb, x, y, target=target, x_init=starts)
    with torch.no_grad():
        pred = model(res.x_adv).argmax(1)
    assert bool(res.success.all())
    assert bool((pred == target).all())
    start_dist = (starts - x).flatten(1).norm(dim=1)
    assert bool((res.norms <= start_dist + 1e-5).all()), "HSJA only moves its start toward the image"
    assert bool((res.norms < 0.8 * start_dist).all()), "the iterations shrink the distance"
    assert int(res.queries.sum()) == bb.stats.queries and int(res.queries.max()) <= 1500


def test_targeted_signflip_from_target_class_images_reaches_the_target() -> None:
    model = multiclass_model(k=10, seed=1)
    pool_x, pool_y = _pool(model)
    x, y = pool_x[:6], pool_y[:6]
    present = sorted(set(pool_y[6:].tolist()))
    target = torch.tensor([next(c for c in present[1:] + present if c != int(v)) for v in y])
    starts = starts_of_class(pool_x, pool_y, target, exclude=torch.arange(6))
    bb = BlackBox.from_module(model, input_shape=SHAPE, output="label")
    res = ATTACKS["signflip"](eps=None, max_queries=800, init_tries=1).run(bb, x, y, target=target, x_init=starts)
    with torch.no_grad():
        pred = model(res.x_adv).argmax(1)
    assert bool(res.success.all()) and bool((pred == target).all())
    start_dist = (starts - x).flatten(1).abs().amax(dim=1)
    assert bool((res.extra["min_norm"] < start_dist).all())
    assert int(res.queries.sum()) == bb.stats.queries and int(res.queries.max()) <= 800


def test_targeted_hsja_on_a_binary_linear_model_reaches_the_exact_distance() -> None:
    model, x, y, l2, _ = binary_problem(n=6, seed=5)
    target = 1 - y
    pool_x = 0.3 + 0.4 * torch.rand(200, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        pool_y = model(pool_x).argmax(1)
    starts = starts_of_class(pool_x, pool_y, target)
    bb = BlackBox.from_module(model, input_shape=SHAPE, output="label")
    res = ATTACKS["hsja"](norm="l2", eps=None, max_queries=1000).run(bb, x, y, target=target, x_init=starts)
    ratio = res.extra["min_norm"] / l2
    assert bool(res.success.all())
    assert float(ratio.min()) >= 1.0 - 1e-4 and float(ratio.median()) <= 1.5, ratio


def test_a_start_that_is_not_adversarial_falls_back_and_its_check_is_charged() -> None:
    model, x, y, _, _ = binary_problem(n=2, seed=6)
    bb = BlackBox.from_module(model, input_shape=SHAPE, output="label")
    atk = ATTACKS["hsja"](norm="l2", eps=None, max_queries=300, num_iterations=2, seed=0)
    res_bad = atk.run(bb, x, y, x_init=x.clone())  # the images themselves are not adversarial
    bb2 = BlackBox.from_module(model, input_shape=SHAPE, output="label")
    atk.run(bb2, x, y)
    assert bool(res_bad.success.all())  # uniform noise found a start anyway
    assert int(bb.stats.queries) == int(bb2.stats.queries) + len(x), "one charged check per start"
    assert int(res_bad.queries.sum()) == bb.stats.queries


def test_x_init_is_refused_by_attacks_that_take_no_start_and_checked_for_shape() -> None:
    model, x, y, _, _ = binary_problem(n=2)
    bb = BlackBox.from_module(model, input_shape=SHAPE)
    with pytest.raises(InputError, match=r"square takes no starting images.*hsja, signflip"):
        ATTACKS["square"](eps=0.1, max_queries=10).run(bb, x, y, x_init=x)
    with pytest.raises(InputError, match="x_init must have the images' shape"):
        ATTACKS["hsja"](max_queries=10).run(bb, x, y, x_init=x[:1])


def test_starts_of_class_names_a_missing_class() -> None:
    with pytest.raises(InputError, match="no image of target class 7"):
        starts_of_class(torch.zeros(3, *SHAPE), torch.tensor([0, 1, 1]), torch.tensor([1, 7]))
