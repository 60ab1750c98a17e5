"""Zeroth-order estimators: unbiasedness (RGE), O(mu) accuracy (CGE), exact query counts."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from bbdefense.certified.zo.estimators import cge, estimate, query_cost, rge, surrogate_loss, unit_directions
from bbdefense.errors import InputError


def _quadratic(d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(d, d, generator=g, dtype=torch.float64)
    return m @ m.T / d + torch.eye(d, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)


class Counter:
    """Loss oracle that counts every probe point and every call."""

    def __init__(self, fn):  # type: ignore[no-untyped-def]
        self.fn, self.points, self.calls = fn, 0, 0

    def __call__(self, pts: torch.Tensor) -> torch.Tensor:
        self.points += pts.shape[0] * pts.shape[1]
        self.calls += 1
        return self.fn(pts)


def test_rge_unbiased_for_quadratic() -> None:
    """E[RGE] = grad of the mu-smoothed loss = A w + b exactly for a quadratic; z-test every coordinate."""
    d, n = 6, 4000
    a, bvec = _quadratic(d)
    w0 = torch.linspace(-1, 1, d, dtype=torch.float64)

    def loss(p: torch.Tensor) -> torch.Tensor:  # (B, P, d) -> (B, P)
        return 0.5 * torch.einsum("bpi,ij,bpj->bp", p, a, p) + p @ bvec

    w = w0.expand(n, d).clone()  # n independent estimates in one batch
    est = rge(loss, w, q=3, mu=0.05, generator=torch.Generator().manual_seed(1))
    true = a @ w0 + bvec
    mean, se = est.grad.mean(0), est.grad.std(0) / math.sqrt(n)
    z = (mean - true) / se
    assert z.abs().max() < 4.5, (mean, true, z)
    # and it is an estimate, not the truth: individual estimates scatter
    assert est.grad.std(0).min() > 0.1


def test_rge_direction_is_wrong_when_scale_dropped() -> None:
    """The d/q factor matters: without it the mean is off by d/q, which the z-test above would catch."""
    d, n = 6, 4000
    a, bvec = _quadratic(d)
    w0 = torch.zeros(d, dtype=torch.float64)

    def loss(p: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.einsum("bpi,ij,bpj->bp", p, a, p) + p @ bvec

    est = rge(loss, w0.expand(n, d).clone(), q=2, mu=0.01, generator=torch.Generator().manual_seed(2))
    ratio = (est.grad.mean(0) @ bvec) / (bvec @ bvec)
    assert abs(float(ratio) - 1.0) < 0.1  # with d/q; without it the ratio would be q/d = 0.33


@pytest.mark.parametrize("difference,order", [("forward", 1), ("central", 2)])
def test_cge_matches_true_gradient_to_order_mu(difference: str, order: int) -> None:
    d = 5
    w = torch.tensor([[0.3, -0.7, 1.1, 0.0, 2.0], [1.0, 0.5, -0.5, -1.0, 0.2]], dtype=torch.float64)

    def f(p: torch.Tensor) -> torch.Tensor:
        return torch.sin(p).sum(-1) + 0.5 * (p ** 3).sum(-1) + torch.exp(0.3 * p[..., 0] * p[..., 1])

    wr = w.clone().requires_grad_(True)
    f(wr.unsqueeze(1)).sum().backward()
    true = wr.grad
    errs = []
    for mu in (1e-2, 5e-3, 2.5e-3):
        est = cge(f, w, mu=mu, difference=difference)  # type: ignore[arg-type]
        errs.append(float((est.grad - true).abs().max()))
    assert errs[0] < 10 * 1e-2 ** order
    # halving mu divides the error by ~2 (forward) or ~4 (central)
    for e1, e2 in itertools.pairwise(errs):
        assert 2 ** order * 0.8 < e1 / e2 < 2 ** order * 1.25, errs
    assert d == est.grad.shape[1]


def test_cge_exact_on_linear() -> None:
    c = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    w = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for diff in ("forward", "central"):
        est = cge(lambda p: p @ c, w, mu=0.1, difference=diff)  # type: ignore[arg-type]
        assert torch.allclose(est.grad, c.expand(4, 3))


@pytest.mark.parametrize("method,kw,expected", [
    ("rge", {"q": 7}, 3 * 8), ("rge", {"q": 1}, 3 * 2),
    ("cge", {"difference": "forward"}, 3 * 11), ("cge", {"difference": "central"}, 3 * 20),
])
def test_query_counts_exact_and_batched(method: str, kw: dict, expected: int) -> None:
    w = torch.zeros(3, 10)
    oracle = Counter(lambda p: p.sum(-1))
    est = estimate(method, oracle, w, generator=torch.Generator().manual_seed(0), **kw)
    assert est.queries == oracle.points == expected
    assert est.calls == oracle.calls == 1  # all probes of the step in one oracle call
    assert query_cost(method, batch=3, d=10, **kw) == expected


def test_chunking_splits_calls_but_not_queries() -> None:
    w = torch.zeros(4, 10)
    oracle = Counter(lambda p: (p ** 2).sum(-1))
    est = cge(oracle, w, mu=0.01, difference="central", chunk=16)  # 16 points per call = 4 probes x 4 samples
    assert est.queries == oracle.points == 80
    assert est.calls == oracle.calls == 5


def test_unit_directions_on_sphere() -> None:
    u = unit_directions(5, 7, 11, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(u.norm(dim=2), torch.ones(5, 7))


def test_surrogate_loss_backprops_the_estimate() -> None:
    """Eq. 8: d/dtheta mean_b <z_b(theta), a_b> = mean_b J_b^T a_b."""
    theta = torch.tensor([1.0, 2.0], requires_grad=True)
    z = torch.stack([theta * 2, theta * 3])  # (B=2, d=2)
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    surrogate_loss(z, a).backward()
    assert torch.allclose(theta.grad, torch.tensor([1.0, 1.5]))


def test_errors_name_the_value() -> None:
    with pytest.raises(InputError, match="mu must be > 0, got -1"):
        rge(lambda p: p.sum(-1), torch.zeros(2, 3), mu=-1)
    with pytest.raises(InputError, match="q must be >= 1, got 0"):
        rge(lambda p: p.sum(-1), torch.zeros(2, 3), q=0)
    with pytest.raises(InputError, match="'backward'"):
        cge(lambda p: p.sum(-1), torch.zeros(2, 3), difference="backward")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="unknown zeroth-order method 'sge'"):
        query_cost("sge", batch=1, d=1)
    with pytest.raises(InputError, match=r"shape \(2,\)"):
        rge(lambda p: p.sum(-1), torch.zeros(2))
    with pytest.raises(InputError, match="loss_fn must return shape"):
        rge(lambda p: p.sum(), torch.zeros(2, 3))
