"""Noise families: declared sigma, reductions of the generalized Gaussian, closed forms, conversions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import gammaln
from scipy.stats import ks_2samp, kstest, norm

from bbdefense.certify import NOISES, convert_radius, make_noise
from bbdefense.errors import InputError, UnknownNameError

N = 200_000


def _draw(noise, n: int = N, seed: int = 0) -> np.ndarray:
    return noise.sample((n,), torch.Generator().manual_seed(seed)).double().numpy()


def _std_tolerance(kurtosis: float, n: int = N, z: float = 5.0) -> float:
    """Relative tolerance on the sample std: sd(s^2)/sigma^2 = sqrt((kurt - 1)/n); s ~ half of that."""
    return z * 0.5 * math.sqrt((kurtosis - 1.0) / n)


def _gg_kurtosis(b: float) -> float:
    return math.exp(gammaln(5 / b) + gammaln(1 / b) - 2 * gammaln(3 / b))


@pytest.mark.parametrize("name, params, kurt", [
    ("gaussian", {}, 3.0), ("laplace", {}, 6.0), ("uniform", {}, 1.8),
    ("gen_gaussian", {"beta": 0.5}, _gg_kurtosis(0.5)), ("gen_gaussian", {"beta": 1.5}, _gg_kurtosis(1.5)),
    ("gen_gaussian", {"beta": 2.75}, _gg_kurtosis(2.75)), ("gen_gaussian", {"beta": 4.0}, _gg_kurtosis(4.0)),
    ("pareto", {"k": 7.0}, 6.0 * (7 - 1) * (7 - 2) / ((7 - 3) * (7 - 4))),  # Lomax kurtosis
])
def test_empirical_std_matches_sigma(name: str, params: dict, kurt: float) -> None:
    sigma = 0.37
    x = _draw(make_noise(name, sigma=sigma, **params))
    tol = _std_tolerance(kurt)
    assert abs(x.std() / sigma - 1.0) < tol, (name, params, x.std(), tol)
    assert abs(x.mean()) < 6 * sigma / math.sqrt(N)


def test_pareto_default_matches_lomax_law() -> None:
    nz = make_noise("pareto", sigma=0.25)  # k = 3: finite std, infinite 4th moment -> test the law itself
    a, k = nz.scale, nz.k
    assert nz.sigma == pytest.approx(a * math.sqrt(2 / ((k - 1) * (k - 2))))
    x = np.abs(_draw(nz))
    assert kstest(x, lambda t: 1 - (1 + t / a) ** (-k)).pvalue > 1e-3


@pytest.mark.parametrize("name, params", [("cauchy", {}), ("pareto", {"k": 1.0})])
def test_iqr_convention_for_infinite_variance(name: str, params: dict) -> None:
    sigma = 0.5
    x = _draw(make_noise(name, sigma=sigma, **params))
    q1, q3 = np.quantile(x, [0.25, 0.75])
    assert q3 == pytest.approx(norm.ppf(0.75) * sigma, rel=0.02)
    assert q1 == pytest.approx(-norm.ppf(0.75) * sigma, rel=0.02)


def test_gen_gaussian_reduces_to_laplace_and_gaussian() -> None:
    sigma = 0.3
    lap, gauss = make_noise("laplace", sigma=sigma), make_noise("gaussian", sigma=sigma)
    g1, g2 = make_noise("gen_gaussian", sigma=sigma, beta=1.0), make_noise("gen_gaussian", sigma=sigma, beta=2.0)
    n = 50_000
    assert ks_2samp(_draw(g1, n, 1), _draw(lap, n, 2)).pvalue > 1e-3
    assert ks_2samp(_draw(g2, n, 3), _draw(gauss, n, 4)).pvalue > 1e-3
    assert g1.scale == pytest.approx(lap.scale) and g2.scale == pytest.approx(math.sqrt(2) * sigma)
    xs = torch.linspace(-1, 1, 11)
    assert torch.allclose(g1.log_density(xs), lap.log_density(xs))
    assert torch.allclose(g2.log_density(xs), gauss.log_density(xs))
    for p in (0.55, 0.7, 0.9, 0.99, 0.9999):
        for nm in ("l1", "l2", "linf"):
            assert g1.radius(p, nm, 784)[0] == pytest.approx(lap.radius(p, nm, 784)[0], rel=1e-9)
            assert g2.radius(p, nm, 784)[0] == pytest.approx(gauss.radius(p, nm, 784)[0], rel=1e-9)


def test_closed_forms_known_values() -> None:
    s = 0.5
    assert make_noise("gaussian", sigma=s).radius(0.9, "l2", 10)[0] == pytest.approx(s * norm.ppf(0.9))
    assert make_noise("laplace", sigma=s).radius(0.9, "l1", 10)[0] == pytest.approx(-s / math.sqrt(2) * math.log(0.2))
    u = make_noise("uniform", sigma=s)
    assert u.radius(0.9, "l1", 10)[0] == pytest.approx(2 * math.sqrt(3) * s * 0.4)
    assert u.radius(0.9, "linf", 1)[0] == pytest.approx(u.radius(0.9, "l1", 1)[0])
    assert u.radius(0.9, "linf", 10) == (pytest.approx(2 * math.sqrt(3) * s * (1 - 0.6 ** 0.1)), "closed")
    # pareto l1 is increasing in rho and 0 at rho = 1/2
    pr = make_noise("pareto", sigma=s)
    vals = [pr.radius(p, "l1", 10)[0] for p in (0.5001, 0.6, 0.8, 0.95)]
    assert vals == sorted(vals) and vals[0] < 1e-3
    assert make_noise("cauchy", sigma=s).radius(0.9, "l2", 10) is None
    assert make_noise("gen_gaussian", sigma=s, beta=0.5).radius(0.9, "l1", 10) is None


def test_norm_conversions() -> None:
    d = 784
    assert convert_radius(1.0, "l2", "l1", d) == 1.0
    assert convert_radius(1.0, "l2", "linf", d) == pytest.approx(1 / 28)
    assert convert_radius(1.0, "l1", "l2", d) == pytest.approx(1 / 28)
    assert convert_radius(1.0, "l1", "linf", d) == pytest.approx(1 / 784)
    g = make_noise("gaussian", sigma=0.25)
    r2 = g.radius(0.9, "l2", d)[0]
    assert g.radius(0.9, "l1", d) == (pytest.approx(r2), "from_l2")
    assert g.radius(0.9, "linf", d) == (pytest.approx(r2 / 28), "from_l2")
    assert g.radius(0.4, "l2", d) == (0.0, "abstain")


def test_registry_and_errors() -> None:
    assert set(NOISES) == {"gaussian", "laplace", "gen_gaussian", "uniform", "cauchy", "pareto"}
    with pytest.raises(UnknownNameError, match="gausian"):
        make_noise("gausian")
    with pytest.raises(InputError, match="sigma"):
        make_noise("gaussian", sigma=0.0)
    with pytest.raises(InputError, match="beta"):
        make_noise("gen_gaussian", sigma=0.1, beta=-1)
    with pytest.raises(InputError, match="bad parameters"):
        make_noise("laplace", sigma=0.1, beta=2)
    with pytest.raises(InputError, match="norm"):
        make_noise("gaussian").radius(0.9, "l3", 10)


@pytest.mark.parametrize("name", ["gaussian", "laplace", "gen_gaussian", "uniform", "cauchy", "pareto"])
def test_sampling_uses_only_the_generator(name: str) -> None:
    nz = make_noise(name, sigma=0.2)
    torch.manual_seed(123)
    a = nz.sample((3, 1, 4, 4), torch.Generator().manual_seed(7))
    torch.manual_seed(456)
    b = nz.sample((3, 1, 4, 4), torch.Generator().manual_seed(7))
    assert a.dtype == torch.float32 and a.shape == (3, 1, 4, 4)
    assert torch.equal(a, b) and torch.isfinite(a).all()
    p = nz.params()
    assert p["noise"] == name and p["sigma"] == 0.2 and p["a"] > 0
