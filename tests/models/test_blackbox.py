"""The query oracle: counting, budgets, output modes, validation, devices."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bbdefense import AccessError, BlackBox, InputError, QueryBudgetExceeded, WhiteBox


def make_bb(model, **kw) -> BlackBox:
    return BlackBox.from_module(model, input_shape=(1, 8, 8), **kw)


def test_blackbox_counts_one_query_per_image(linear_model, images):
    bb = make_bb(linear_model)
    bb(images[:5])
    bb(images[:7])
    assert bb.stats.queries == 12
    assert bb.stats.calls == 2
    bb.reset_stats()
    assert bb.stats.queries == 0 and bb.stats.calls == 0


def test_blackbox_logits_equal_module(linear_model, images):
    bb = make_bb(linear_model)
    with torch.no_grad():
        ref = linear_model(images)
    torch.testing.assert_close(bb(images), ref)


def test_blackbox_probs_are_softmax(linear_model, images):
    bb = make_bb(linear_model, output="probs")
    with torch.no_grad():
        ref = torch.softmax(linear_model(images), 1)
    torch.testing.assert_close(bb(images), ref)


def test_blackbox_topk_reveals_only_k_probs(linear_model, images):
    bb = make_bb(linear_model, output="probs", top_k=3)
    out = bb(images)
    assert out.shape == (16, 10)
    assert ((out > 0).sum(1) == 3).all()
    full = torch.softmax(linear_model(images).detach(), 1)
    top = full.topk(3, 1)
    torch.testing.assert_close(out.gather(1, top.indices), top.values)


def test_label_mode_never_reveals_scores(linear_model, images):
    bb = make_bb(linear_model, output="label")
    out = bb(images)
    assert out.dtype == torch.int64 and out.shape == (16,)
    assert torch.equal(out, linear_model(images).argmax(1))
    assert not bb.reveals_scores


def test_budget_refuses_before_work(linear_model, images):
    calls = []

    def fn(x):
        calls.append(len(x))
        return linear_model(x)

    bb = BlackBox.from_callable(fn, num_classes=10, input_shape=(1, 8, 8), budget=10)
    bb(images[:6])
    with pytest.raises(QueryBudgetExceeded, match="6 of 10 used, a batch of 5 was refused"):
        bb(images[:5])
    assert calls == [6]  # the refused batch never reached the backend
    bb(images[:4])
    assert bb.stats.queries == 10 and bb.stats.remaining == 0


@settings(max_examples=60, deadline=None)
@given(budget=st.integers(0, 40), batches=st.lists(st.integers(0, 12), min_size=1, max_size=12))
def test_budget_never_lets_image_n_plus_1_through(budget, batches):
    seen = []

    def fn(x):
        seen.append(len(x))
        return torch.zeros(len(x), 3)

    bb = BlackBox.from_callable(fn, num_classes=3, input_shape=(1, 2, 2), budget=budget)
    served = 0
    for n in batches:
        x = torch.zeros(n, 1, 2, 2)
        if served + n > budget:
            with pytest.raises(QueryBudgetExceeded):
                bb(x)
        else:
            bb(x)
            served += n
    assert sum(seen) == served == bb.stats.queries <= budget


def test_audit_queries_are_separate_and_uncharged(linear_model, images):
    bb = make_bb(linear_model, budget=5)
    bb(images[:5])
    bb.audit(images)  # verification is never refused by the budget and never charged
    assert bb.stats.queries == 5 and bb.stats.audit_queries == 16


@pytest.mark.parametrize(
    ("x", "msg"),
    [
        (torch.rand(1, 8, 8), r"shape \(N, C, H, W\) with a batch dimension, got shape \(1, 8, 8\)"),
        (torch.rand(2, 1, 8, 9), r"expected images of shape \(N, 1, 8, 8\), got \(2, 1, 8, 9\)"),
        (torch.rand(2, 1, 8, 8, dtype=torch.float64), "expected float32 images, got dtype torch.float64"),
        (torch.full((2, 1, 8, 8), float("nan")), "images contain NaN"),
        (torch.full((2, 1, 8, 8), float("inf")), "images contain inf"),
        (torch.full((2, 1, 8, 8), 1.5), r"expected images in \[0, 1\], got values in \[1.5, 1.5\]"),
        (torch.full((2, 1, 8, 8), -0.1), r"expected images in \[0, 1\]"),
    ],
)
def test_bad_input_raises_input_error(linear_model, x, msg):
    bb = make_bb(linear_model)
    with pytest.raises(InputError, match=msg):
        bb(x)
    assert bb.stats.queries == 0


def test_non_tensor_input(linear_model):
    with pytest.raises(InputError, match=r"expected a torch\.Tensor of images, got list"):
        make_bb(linear_model)([[0.0]])


def test_output_mode_errors(linear_model):
    with pytest.raises(InputError, match="unknown output mode 'scores'"):
        make_bb(linear_model, output="scores")
    with pytest.raises(InputError, match="top_k needs output='probs'"):
        make_bb(linear_model, top_k=2)
    with pytest.raises(AccessError, match="cannot reveal logits"):
        BlackBox.from_callable(lambda x: x, returns="probs", output="logits", num_classes=3, input_shape=(1, 2, 2))
    with pytest.raises(AccessError, match="cannot reveal probabilities"):
        BlackBox.from_callable(lambda x: x, returns="label", num_classes=3, input_shape=(1, 2, 2), output="probs")


def test_callable_backend_checks_output_shape():
    bb = BlackBox.from_callable(lambda x: torch.zeros(3), num_classes=3, input_shape=(1, 2, 2))
    with pytest.raises(InputError, match=r"callable returned logits of shape \(3,\), expected \(2, K\)"):
        bb(torch.zeros(2, 1, 2, 2))


def test_callable_numpy_output_and_label_backend():
    import numpy as np

    bb = BlackBox.from_callable(lambda x: np.array([1, 2]), returns="label", num_classes=3, input_shape=(1, 2, 2),
                                output="label")
    assert bb(torch.zeros(2, 1, 2, 2)).tolist() == [1, 2]


def test_results_on_callers_device(linear_model, images):
    # The backend runs on the module's device; results come back on the input's device (CPU here;
    # the same code path moves CUDA outputs back when a GPU is present).
    bb = make_bb(linear_model)
    assert bb(images).device == images.device


def test_randomized_flag_from_module(linear_model):
    class Noisy(torch.nn.Module):
        randomized = True

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x)

    assert make_bb(Noisy(linear_model)).randomized
    assert not make_bb(linear_model).randomized


def test_whitebox_logits_are_differentiable_and_counted(linear_model, images):
    wb = WhiteBox(linear_model, input_shape=(1, 8, 8))
    x = images.clone().requires_grad_(True)
    wb.logits(x).sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad[0].flatten(), linear_model.lin.weight.sum(0))
    wb(images[:3])
    assert wb.stats.queries == 19
    assert wb.module is linear_model


def test_query_log(linear_model, images):
    bb = make_bb(linear_model, log_queries=True)
    bb(images[:2])
    bb.audit(images[:3])
    assert [(e.n, e.kind) for e in bb.log] == [(2, "query"), (3, "audit")]


def test_inputs_not_mutated(linear_model, images):
    x = images.clone()
    make_bb(linear_model)(x)
    assert torch.equal(x, images)


def test_input_shape_is_three_ints_and_another_length_is_refused(linear_model):
    bb = BlackBox.from_module(linear_model, num_classes=10, input_shape=(torch.tensor(1), 8, 8))  # type: ignore[arg-type]
    assert bb.input_shape == (1, 8, 8) and all(type(s) is int for s in bb.input_shape)
    with pytest.raises(InputError, match=r"input_shape must be \(C, H, W\), got \(8, 8\)"):
        BlackBox.from_module(linear_model, num_classes=10, input_shape=(8, 8))  # type: ignore[arg-type]


def test_whitebox_module_reads_its_backend(linear_model):
    wb = WhiteBox(linear_model, input_shape=(1, 8, 8))
    assert wb.module is linear_model
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    assert wb.with_backend(WhiteBox(other, input_shape=(1, 8, 8)).backend).module is other
