"""The audit rule at the choke point: audit queries are free on a local model, charged on a remote API
(against a declared audit budget, else against the query budget), and a plan is checked before any query."""

from __future__ import annotations

import pytest
import torch

from bbdefense.errors import QueryBudgetExceeded
from bbdefense.models import BlackBox
from bbdefense.models.backends import CallableBackend
from bbdefense.models.remote import RemoteBlackBox

SHAPE = (1, 4, 4)


class Billing(CallableBackend):
    """A fake remote backend that bills every image it is sent, like a server."""

    def __init__(self, max_batch: int = 3) -> None:
        super().__init__(lambda x: torch.zeros(x.shape[0], 10), returns="logits")
        self.billed, self.max_batch = 0, max_batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.billed += int(x.shape[0])
        return super().forward(x)


def _x(n: int) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(n))


def test_local_audit_is_free_and_unlimited() -> None:
    bb = BlackBox.from_callable(lambda x: torch.zeros(x.shape[0], 10), num_classes=10, input_shape=SHAPE, budget=5)
    assert not bb.remote and not bb.audit_charged
    bb.audit(_x(50))
    bb.query(_x(5))
    st = bb.stats
    assert (st.queries, st.audit_queries, st.charged, st.remaining, st.audit_remaining) == (5, 50, 5, 0, None)
    assert bb.audit_allowance(1000) == 1000
    bb.check_plan(0, 10_000)  # local evaluation costs nothing


def test_remote_audit_is_charged_against_the_query_budget() -> None:
    be = Billing()
    bb = RemoteBlackBox(be, num_classes=10, input_shape=SHAPE, budget=10)
    assert bb.remote and bb.audit_charged
    bb.query(_x(6))
    bb.audit(_x(3))
    st = bb.stats
    assert (st.queries, st.audit_queries, st.charged, st.remaining) == (6, 3, 9, 1) and be.billed == 9
    assert bb.audit_allowance(100) == 1
    with pytest.raises(QueryBudgetExceeded, match="audit"):
        bb.audit(_x(2))
    with pytest.raises(QueryBudgetExceeded):
        bb.query(_x(2))
    assert be.billed == 9  # refused batches send nothing
    with pytest.raises(QueryBudgetExceeded, match=r"needs 4 queries \(2 \+ 2 evaluation\)"):
        bb.check_plan(2, 2)


def test_remote_audit_with_a_declared_audit_budget() -> None:
    be = Billing()
    bb = RemoteBlackBox(be, num_classes=10, input_shape=SHAPE, budget=10, audit_budget=4)
    bb.query(_x(10))
    bb.audit(_x(4))  # its own budget, not the query budget
    assert bb.stats.charged == 14 and be.billed == 14 and bb.audit_allowance(9) == 0
    with pytest.raises(QueryBudgetExceeded, match="evaluation"):
        bb.audit(_x(7))  # a split batch over the budget sends no chunk at all
    assert be.billed == 14
    zero = RemoteBlackBox(Billing(), num_classes=10, input_shape=SHAPE, audit_budget=0)
    assert zero.audit_allowance(100) == 0
    with pytest.raises(QueryBudgetExceeded, match="evaluation budget has 0 of 0 left"):
        zero.check_plan(10, 1)


def test_remote_check_plan_asks_the_server() -> None:
    be = Billing()
    be.url = "http://api"  # type: ignore[attr-defined]
    be.usage = lambda: {"key": "k", "used": 90, "budget": 100, "remaining": 10}  # type: ignore[attr-defined]
    bb = RemoteBlackBox(be, num_classes=10, input_shape=SHAPE, audit_budget=5)
    bb.check_plan(5, 5)
    with pytest.raises(QueryBudgetExceeded, match="would be charged 11 images but key 'k' has 10 of 100 left"):
        bb.check_plan(6, 5)
    assert be.billed == 0


def test_eot_wrapper_reports_the_wrapped_models_charging() -> None:
    from bbdefense.attacks.eot import EOTBlackBox

    bb = RemoteBlackBox(Billing(), num_classes=10, input_shape=SHAPE, budget=4)
    eot = EOTBlackBox(bb, m=2)
    assert eot.audit_charged
    eot.audit(_x(3))
    assert eot.stats.charged == 3 and eot.audit_allowance(10) == 1
