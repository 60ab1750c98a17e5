"""The one training loop (bbdefense.training.fit): exact answers on least squares, batch order, max_steps,
early stop, events, queries, clipping, a caller's optimiser, and the noise the training modes draw."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bbdefense.certify import make_noise
from bbdefense.data import ImageDataset
from bbdefense.errors import InputError
from bbdefense.events import Event
from bbdefense.training import TRAIN_MODES, OptimConfig, StepOutput, TrainConfig, fit
from bbdefense.training.loop import make_optimizer


def _problem(n: int = 64, d: int = 5, noise: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    y = x @ w + noise * torch.randn(n, generator=g, dtype=torch.float64)
    return x, y, w


def _linear(d: int) -> nn.Linear:
    lin = nn.Linear(d, 1, bias=False).double()
    nn.init.zeros_(lin.weight)
    return lin


def _mse_step(lin: nn.Module):  # type: ignore[no-untyped-def]
    def step(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        xb, yb = batch
        return ((lin(xb).squeeze(1) - yb) ** 2).mean()
    return step


def test_full_batch_gradient_descent_reaches_the_least_squares_solution() -> None:
    x, y, _ = _problem(noise=0.3)
    lin = _linear(5)
    res = fit(lin.parameters(), (x, y), _mse_step(lin), epochs=400, batch_size=len(x),
              generator=torch.Generator().manual_seed(1), optim=OptimConfig("sgd", lr=0.2, momentum=0.0))
    w_star = torch.linalg.lstsq(x, y.unsqueeze(1)).solution.squeeze(1)
    assert torch.allclose(lin.weight.detach().squeeze(0), w_star, atol=1e-9)
    assert res.steps == res.epochs == 400 and res.stopped == "epochs"
    residual = float(((x @ w_star - y) ** 2).mean())
    assert res.history[-1]["loss"] == pytest.approx(residual, rel=1e-9)


def test_minibatch_sgd_on_a_consistent_system_finds_the_exact_weights() -> None:
    x, y, w = _problem()
    lin = _linear(5)
    fit(lin.parameters(), (x, y), _mse_step(lin), epochs=300, batch_size=16, generator=torch.Generator().manual_seed(2),
        optim=OptimConfig("sgd", lr=0.1, momentum=0.5))
    assert torch.allclose(lin.weight.detach().squeeze(0), w, atol=1e-9)


def test_batches_are_the_seeded_permutations_and_the_loop_draws_nothing_else() -> None:
    x = torch.arange(10, dtype=torch.float64)
    lin = _linear(1)
    seen: list[list[int]] = []

    def step(batch: tuple[torch.Tensor, ...]) -> StepOutput:
        seen.append(batch[0].long().tolist())
        return StepOutput(None, {"n": float(len(batch[0]))})

    g = torch.Generator().manual_seed(5)
    res = fit(lin.parameters(), x, step, epochs=2, batch_size=4, generator=g)
    ref = torch.Generator().manual_seed(5)
    p1, p2 = torch.randperm(10, generator=ref), torch.randperm(10, generator=ref)
    assert seen == [p1[:4].tolist(), p1[4:8].tolist(), p1[8:].tolist(), p2[:4].tolist(), p2[4:8].tolist(),
                    p2[8:].tolist()]
    assert torch.equal(g.get_state(), ref.get_state())  # exactly one permutation per epoch
    assert res.steps == 6 and res.history[0]["n"] == pytest.approx(1.0)  # sums / examples seen
    res = fit(lin.parameters(), x, step, epochs=1, batch_size=4, generator=g, drop_last=True)
    assert res.steps == 2


def test_max_steps_early_stop_and_scheduler_length() -> None:
    x, y, _ = _problem(n=40)
    lin = _linear(5)
    res = fit(lin.parameters(), (x, y), _mse_step(lin), epochs=10, batch_size=8, max_steps=12,
              generator=torch.Generator().manual_seed(0), optim=OptimConfig("sgd", lr=0.05, scheduler="onecycle"))
    assert (res.steps, res.epochs, res.stopped) == (12, 3, "max_steps")  # 5 + 5 + 2 steps
    assert [r["epoch"] for r in res.history] == [1, 2, 3]
    calls: list[float] = []

    def stop(row: dict[str, float]) -> bool:
        calls.append(row["loss"])
        return row["epoch"] == 2

    res = fit(lin.parameters(), (x, y), _mse_step(lin), epochs=10, batch_size=8, early_stop=stop,
              generator=torch.Generator().manual_seed(0))
    assert (res.steps, res.epochs, res.stopped) == (10, 2, "early_stop") and len(calls) == 2


def test_events_per_epoch_with_queries_and_modes() -> None:
    x = torch.rand(6, 3, dtype=torch.float64)
    lin = nn.Sequential(nn.Linear(3, 1).double(), nn.Dropout(0.0))
    events: list[Event] = []
    modes: list[bool] = []

    def step(batch: tuple[torch.Tensor, ...]) -> StepOutput:
        modes.append(lin.training)
        return StepOutput(lin(batch[0]).pow(2).mean(), {}, queries=len(batch[0]) * 3)

    res = fit(lin.parameters(), x, step, epochs=3, batch_size=4, generator=torch.Generator().manual_seed(0),
              modules=[lin.eval()], task="toy", on_event=events.append)
    assert [(e.kind, e.total, e.unit) for e in events[:1]] == [("start", 3, "epochs")]
    adv = [e for e in events if e.kind == "advance"]
    assert [(e.task, e.n, e.queries) for e in adv] == [("toy", 1, 18)] * 3 and events[-1].kind == "end"
    assert res.queries == 54 and [r["queries"] for r in res.history] == [18, 36, 54]
    assert all(modes) and not lin.training  # train mode inside, eval mode after


def test_gradient_clipping_bounds_each_update() -> None:
    x, y, _ = _problem()
    lin = _linear(5)
    before = lin.weight.detach().clone()
    fit(lin.parameters(), (x, y), _mse_step(lin), epochs=1, batch_size=64, generator=torch.Generator().manual_seed(0),
        optim=OptimConfig("sgd", lr=1.0, momentum=0.0, clip_grad_norm=0.01))
    # clip_grad_norm_ adds 1e-6 to the norm
    assert float((lin.weight.detach() - before).norm()) == pytest.approx(0.01, rel=1e-4)


def test_a_callers_optimizer_keeps_its_state_across_calls() -> None:
    x, y, _ = _problem()
    lin = _linear(5)
    opt = make_optimizer(lin.parameters(), OptimConfig("adam", lr=0.01))
    for _ in range(2):
        fit(None, (x, y), _mse_step(lin), epochs=1, batch_size=32, optimizer=opt, generator=torch.Generator())
    assert opt.state[lin.weight]["step"] == 4


def test_bad_arguments_are_named() -> None:
    x = torch.zeros(4, 2)
    step = _mse_step(_linear(2))
    with pytest.raises(InputError, match="batch_size must be >= 1, got 0"):
        fit([], x, step, epochs=1, batch_size=0, generator=torch.Generator())
    with pytest.raises(InputError, match="same first dimension"):
        fit([], (x, torch.zeros(3)), step, epochs=1, batch_size=2, generator=torch.Generator())
    with pytest.raises(InputError, match="max_steps must be >= 1 or None, got 0"):
        fit([], x, step, epochs=1, batch_size=2, max_steps=0, generator=torch.Generator())
    with pytest.raises(InputError, match="optimizer must be 'adam' or 'sgd', got 'lbfgs'"):
        OptimConfig("lbfgs").check()  # type: ignore[arg-type]


@pytest.mark.parametrize(("mode", "noise", "params"), [("gaussian", "gaussian", {}), ("noise", "laplace", {}),
                                                       ("noise", "gen_gaussian", {"beta": 1.5})])
def test_noise_modes_draw_through_the_certify_noise(mode: str, noise: str, params: dict) -> None:
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(mode=mode, sigma=0.3, noise=noise, noise_params=params)
    got = TRAIN_MODES[mode](nn.Identity(), x, torch.zeros(3), torch.Generator().manual_seed(7), cfg)
    want = x + make_noise(noise, sigma=0.3, **params).sample(x.shape, torch.Generator().manual_seed(7))
    assert torch.equal(got, want)


def test_image_dataset_batches_are_x_and_y() -> None:
    ds = ImageDataset("t", torch.rand(5, 1, 2, 2), torch.arange(5), [str(i) for i in range(5)], (0.5,), (0.5,))
    pairs: list[bool] = []

    def step(batch: tuple[torch.Tensor, ...]) -> StepOutput:
        xb, yb = batch
        pairs.extend(bool(torch.equal(ds.x[int(k)], xi)) for k, xi in zip(yb, xb, strict=True))
        return StepOutput(None)

    fit([nn.Parameter(torch.zeros(1))], ds, step, epochs=1, batch_size=2, generator=torch.Generator().manual_seed(0))
    assert pairs == [True] * 5
