"""EOTBlackBox: averages M outputs, charges M queries, keeps per-image budgets in real queries."""

from __future__ import annotations

import pytest
import torch
from attack_helpers import SHAPE, images, linear10

from bbdefense.attacks import ATTACKS
from bbdefense.attacks.eot import EOTBlackBox
from bbdefense.errors import AccessError, InputError
from bbdefense.models import BlackBox


def noisy(sigma: float = 1.0, output: str = "logits") -> BlackBox:
    module = linear10()
    g = torch.Generator().manual_seed(7)

    def fn(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(x) + sigma * torch.randn(x.shape[0], 10, generator=g)

    return BlackBox.from_callable(fn, returns="logits", num_classes=10, input_shape=SHAPE, randomized=True,
                                  output=output)


def test_eot_averages_m_outputs_and_charges_m_queries() -> None:
    inner = noisy(sigma=0.0)
    eot = EOTBlackBox(inner, m=4)
    x = images(3)
    out = eot.query(x)
    assert torch.allclose(out, linear10()(x).detach(), atol=1e-5)
    assert inner.stats.queries == 12 and eot.stats.queries == 12 and eot.query_cost == 4


def test_eot_reduces_the_variance_by_m() -> None:
    x = images(1).repeat(400, 1, 1, 1)
    single = noisy(1.0).query(x)
    avg = EOTBlackBox(noisy(1.0), m=16).query(x)
    ratio = float(single.var(dim=0).mean() / avg.var(dim=0).mean())
    assert 10 < ratio < 25  # 16 within sampling error of 400 draws


def test_eot_averages_probabilities_on_a_probs_oracle() -> None:
    out = EOTBlackBox(noisy(1.0, output="probs"), m=3).query(images(2))
    assert torch.allclose(out.sum(1), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize("name", ["square", "nes", "bandits", "signhunter", "simba"])
def test_score_attack_on_eot_charges_m_per_evaluation_within_budget(name: str) -> None:
    inner = noisy(0.5)
    eot = EOTBlackBox(inner, m=5)
    x = images(4)
    y = linear10()(x).argmax(1).detach()
    res = ATTACKS[name](eps=0.05, max_queries=101).run(eot, x, y)
    assert int(res.queries.sum()) == inner.stats.queries
    assert bool((res.queries % 5 == 0).all()) and int(res.queries.max()) <= 101
    assert res.extra["query_cost"] == 5


def test_eot_audit_is_one_uncharged_pass_of_the_real_model() -> None:
    inner = noisy(1.0)
    eot = EOTBlackBox(inner, m=8)
    eot.audit(images(3))
    assert inner.stats.audit_queries == 3 and inner.stats.queries == 0


def test_eot_refuses_label_only_models_and_bad_m() -> None:
    lab = BlackBox.from_module(linear10(), input_shape=SHAPE, output="label")
    with pytest.raises(AccessError, match="EOT averages scores; the model reveals only label"):
        EOTBlackBox(lab, m=2)
    with pytest.raises(InputError, match="EOT needs m >= 1 samples, got 0"):
        EOTBlackBox(noisy(), m=0)


def test_eot_budget_is_the_inner_models() -> None:
    inner = noisy()
    inner.budget = 10
    eot = EOTBlackBox(inner, m=5)
    eot.query(images(2))
    from bbdefense.errors import QueryBudgetExceeded

    with pytest.raises(QueryBudgetExceeded):
        eot.query(images(1))
