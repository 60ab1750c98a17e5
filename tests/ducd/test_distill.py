"""DUCD distillation: exact query accounting, the losses by hand, label-only access, budgets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bbdefense.certified.ducd import DistillConfig, TransferSet, distill, distill_loss
from bbdefense.certified.ducd.distill import augment_batch, collect_transfer_set, resolve_loss
from bbdefense.errors import AccessError, InputError, QueryBudgetExceeded
from bbdefense.models import BlackBox
from linear_helpers import Linear

SHAPE = (1, 4, 4)


def _teacher(seed: int = 0, k: int = 3) -> Linear:
    g = torch.Generator().manual_seed(seed)
    return Linear(torch.randn(k, 16, generator=g) * 3, torch.randn(k, generator=g))


def _images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def _student(seed: int = 5, k: int = 3) -> Linear:
    g = torch.Generator().manual_seed(seed)
    return Linear(torch.randn(k, 16, generator=g) * 0.01, torch.zeros(k))


def test_l1_logit_loss_matches_hand_computation() -> None:
    a = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 3.0]])
    t = torch.tensor([[0.0, 1.0, 0.5], [2.0, -1.0, 1.0]])
    # row 1: 1 + 3 + 0 = 4; row 2: 2 + 1 + 2 = 5; mean 4.5
    assert float(distill_loss("l1_logits", a, t)) == pytest.approx(4.5)
    p = torch.softmax(t, 1)
    lp = p.log()
    want = ((lp - lp.mean(1, keepdim=True)) - (a - a.mean(1, keepdim=True))).abs().sum(1).mean()
    assert float(distill_loss("l1_logprobs", a, p)) == pytest.approx(float(want), rel=1e-6)
    # log-probs are shift invariant: logits + c give the same loss from probabilities
    assert float(distill_loss("l1_logprobs", a + 7.0, p)) == pytest.approx(float(want), rel=1e-5)
    lab = torch.tensor([1, 2])
    assert float(distill_loss("ce_labels", a, lab)) == pytest.approx(
        float(nn.functional.cross_entropy(a, lab)), rel=1e-6)


def test_l1_logprob_loss_floors_zero_probabilities() -> None:
    a = torch.tensor([[0.0, 0.0, 0.0]])
    p = torch.tensor([[1.0, 0.0, 0.0]])  # a top-1 API: the other probabilities are 0
    v = float(distill_loss("l1_logprobs", a, p, prob_floor=1e-6))
    assert torch.isfinite(torch.tensor(v))
    # centred target: [0, -13.8155, -13.8155] - mean = [9.2103, -4.6052, -4.6052]; centred surrogate: 0
    assert v == pytest.approx(9.2103 + 2 * 4.6052, rel=1e-3)


def test_l1_logprob_loss_pulls_a_confidently_wrong_surrogate_back() -> None:
    a = torch.tensor([[40.0, 0.0, 0.0]], requires_grad=True)  # sure of class 0 (log-probs -40 elsewhere)
    p = torch.tensor([[0.0, 1.0, 0.0]])                      # the target says class 1
    distill_loss("l1_logprobs", a, p).backward()
    assert a.grad is not None and float(a.grad[0, 1]) < 0 < float(a.grad[0, 0])  # descent raises class 1


@pytest.mark.parametrize("budget", [7, 50, 120, 333])
def test_budget_is_exact_and_never_exceeded(budget: int) -> None:
    bb = BlackBox.from_module(_teacher(), input_shape=SHAPE, budget=budget)
    x = _images(50)
    res, ts = distill(bb, _student(), x, DistillConfig(budget=budget, epochs=1, query_batch=32))
    assert res.queries == budget == bb.stats.queries == len(ts)
    assert res.n_base == min(budget, 50) and res.n_augmented == budget - min(budget, 50)
    with pytest.raises(QueryBudgetExceeded):
        bb.query(x[:1])


def test_budget_capped_by_remaining_oracle_budget() -> None:
    bb = BlackBox.from_module(_teacher(), input_shape=SHAPE, budget=40)
    bb.query(_images(15))
    res, _ = distill(bb, _student(), _images(50), DistillConfig(budget=1000, epochs=1))
    assert res.queries == 25 and bb.stats.queries == 40


def test_no_budget_queries_each_image_once_and_reuse_costs_nothing(tmp_path) -> None:
    bb = BlackBox.from_module(_teacher(), input_shape=SHAPE)
    x = _images(40)
    res, ts = distill(bb, _student(), x, DistillConfig(budget=None, epochs=1))
    assert res.queries == 40 == bb.stats.queries
    # the base images are queried unchanged (a permutation of x)
    assert torch.equal(ts.x[ts.x.flatten(1).sum(1).argsort()], x[x.flatten(1).sum(1).argsort()])
    ts.save(tmp_path / "transfer")
    ts2 = TransferSet.load(tmp_path / "transfer")
    res2, _ = distill(bb, _student(), x, DistillConfig(epochs=1), transfer=ts2)
    assert res2.queries == 0 and bb.stats.queries == 40
    assert torch.equal(ts2.out, ts.out)


def test_smaller_budget_queries_a_prefix_of_a_larger_one() -> None:
    x = _images(30)
    outs = []
    for b in (20, 70):
        bb = BlackBox.from_module(_teacher(), input_shape=SHAPE)
        outs.append(collect_transfer_set(bb, x, DistillConfig(budget=b, query_batch=1000)))
    assert torch.equal(outs[0].x, outs[1].x[:20])


def test_distillation_recovers_a_linear_teacher_exactly_enough() -> None:
    teacher = _teacher(k=3)
    bb = BlackBox.from_module(teacher, input_shape=SHAPE, budget=2000)
    student = _student(k=3)
    res, _ = distill(bb, student, _images(400), DistillConfig(budget=2000, epochs=20, lr=0.05, batch_size=100))
    xt = _images(500, seed=9)
    with torch.no_grad():
        agree = float((teacher(xt).argmax(1) == student(xt).argmax(1)).float().mean())
        err = float((teacher(xt) - student(xt)).abs().mean())
    # Eq. 6 has its minimum (0) at the teacher itself: the student converges to the teacher's logits
    assert res.history[-1]["loss"] < 0.01 * res.history[0]["loss"]
    assert agree >= 0.99, agree
    assert err < 0.01, err


def test_label_only_mode_never_sees_scores() -> None:
    teacher = _teacher()
    seen: list[torch.Tensor] = []

    def api(x: torch.Tensor) -> torch.Tensor:  # a label-only remote API
        lab = teacher(x).argmax(1)
        seen.append(lab)
        return lab

    bb = BlackBox.from_callable(api, returns="label", num_classes=3, input_shape=SHAPE, budget=300,
                                output="label")
    assert not bb.reveals_scores
    res, ts = distill(bb, _student(), _images(100), DistillConfig(budget=300, epochs=5, lr=1e-2))
    assert res.loss == "ce_labels" and ts.output == "label"
    assert ts.out.dtype == torch.int64 and ts.out.dim() == 1
    assert torch.equal(torch.cat(seen).cpu(), ts.out)
    with pytest.raises(AccessError, match="reveals 'label'"):
        distill(bb, _student(), _images(10), DistillConfig(loss="l1_logits", epochs=1), transfer=ts)


def test_probs_api_uses_log_probabilities() -> None:
    bb = BlackBox.from_module(_teacher(), input_shape=SHAPE, output="probs")
    res, ts = distill(bb, _student(), _images(30), DistillConfig(epochs=1))
    assert res.loss == "l1_logprobs" and ts.output == "probs"
    assert resolve_loss("auto", "logits") == "l1_logits"


def test_augmented_queries_stay_in_range_and_are_seeded() -> None:
    x = _images(10)
    a = augment_batch(x, x, ("shift", "mixup", "noise"), torch.Generator().manual_seed(3), noise_std=0.5)
    b = augment_batch(x, x, ("shift", "mixup", "noise"), torch.Generator().manual_seed(3), noise_std=0.5)
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1 and a.shape == x.shape
    assert not torch.equal(a, x)


@pytest.mark.parametrize("kw,msg", [({"budget": 0}, "budget must be >= 1 or None, got 0"),
                                    ({"loss": "mse"}, "unknown distillation loss 'mse'"),
                                    ({"augment": ("rotate",)}, "unknown augmentation 'rotate'"),
                                    ({"epochs": 0}, "epochs must be >= 1, got 0")])
def test_bad_config_raises_typed_errors(kw: dict, msg: str) -> None:
    with pytest.raises(InputError, match=msg):
        DistillConfig(**kw).check()


def test_wrong_image_shape_is_refused() -> None:
    bb = BlackBox.from_module(_teacher(), input_shape=SHAPE)
    with pytest.raises(InputError, match=r"shape \(1, 5, 5\)"):
        distill(bb, _student(), torch.rand(4, 1, 5, 5), DistillConfig(epochs=1))
    assert bb.stats.queries == 0
