"""The numerical (DUCD/UniCR) radius agrees with the closed forms where both exist."""

from __future__ import annotations

import math

import pytest
import torch

from bbdefense.certify import make_noise
from bbdefense.certify.numerical import numerical_radius
from bbdefense.errors import InputError


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only add synchronisation (badly so on a loaded machine)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


KW = {"n_mc": 20_000, "particles": 3, "pso_iters": 2, "k_tol": 0.002, "bisect_iters": 30}


def _cases(slow: bool) -> list:
    quick = {("gaussian", "l2", 0.9), ("laplace", "l1", 0.7), ("uniform", "l1", 0.9)}
    grid = [(n, m, p) for n, m in [("gaussian", "l2"), ("laplace", "l1"), ("uniform", "l1")] for p in (0.7, 0.9, 0.97)]
    return [c for c in grid if (c in quick) != slow]


@pytest.mark.parametrize("name, norm, p", _cases(slow=False) + [
    pytest.param(*c, marks=pytest.mark.slow) for c in _cases(slow=True)])
def test_numerical_matches_closed_form_within_5_percent(name: str, norm: str, p: float) -> None:
    nz = make_noise(name, sigma=0.5)
    d = 8
    closed = nz.radius(p, norm, d)
    assert closed is not None and closed[1] == "closed"
    r = numerical_radius(nz, p, norm, d, seed=1, **KW)
    assert r == pytest.approx(closed[0], rel=0.05), (name, norm, p, r, closed)


def test_numerical_gaussian_linf_matches_conversion() -> None:
    # for the Gaussian the worst linf direction is a corner, where R_inf = R_2 / sqrt(d) exactly
    nz, d, p = make_noise("gaussian", sigma=0.5), 8, 0.9
    r = numerical_radius(nz, p, "linf", d, seed=2, **KW)
    assert r == pytest.approx(nz.radius(p, "l2", d)[0] / math.sqrt(d), rel=0.05)


def test_numerical_gen_gaussian_below_one_is_finite_and_monotone() -> None:
    nz = make_noise("gen_gaussian", sigma=0.5, beta=0.5)
    rs = [numerical_radius(nz, p, "l1", 4, seed=0, n_mc=4000, particles=2, pso_iters=1) for p in (0.6, 0.8, 0.95)]
    assert all(math.isfinite(r) and r > 0 for r in rs) and rs == sorted(rs)


def test_numerical_edge_cases() -> None:
    nz = make_noise("gaussian", sigma=0.5)
    assert numerical_radius(nz, 0.5, "l2", 4) == 0.0
    assert numerical_radius(nz, 0.4, "l2", 4) == 0.0
    with pytest.raises(InputError, match="norm"):
        numerical_radius(nz, 0.9, "l7", 4)
    with pytest.raises(InputError):
        numerical_radius(nz, 0.9, "l2", 0)
