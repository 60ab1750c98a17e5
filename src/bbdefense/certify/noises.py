"""Noise families of randomized smoothing, their samplers and closed-form robust radii.

Every noise is i.i.d. over the ``d`` input coordinates and is parameterised by its **per-coordinate
standard deviation** ``sigma`` in [0, 1] pixel space (rs4a's ``sigma``); the family's own scale
(rs4a ``lambd``, UniCR ``alpha``; called ``a`` here) is derived from it and recorded in
:meth:`Noise.params` (pitfall 15: UniCR's ``alpha = 1.41, beta = 2`` is ``sigma = 1``).
Families without a finite variance (Cauchy; Pareto with ``k <= 2``) use the *IQR convention*:
``sigma`` is the std of the Gaussian with the same inter-quartile range, i.e. the quartiles of one
coordinate are ``+-Phi^-1(3/4) sigma = +-0.6745 sigma``.

Closed-form radii are binary-case certificates (``pB = 1 - pA``, ``rho`` = the pA lower bound),
from Cohen et al. (2019), Teng et al. (2020) and Yang et al. (2020, "Randomized smoothing of all
shapes and sizes", reference code tonyduan/rs4a ``src/noises/noises.py`` at a028318):

=============  =======  ============================================================
family         norm     radius
=============  =======  ============================================================
gaussian       l2       ``sigma Phi^-1(rho)``
laplace        l1       ``-b log(2 (1 - rho))``, ``b = sigma / sqrt(2)``
uniform        l1       ``2 a (rho - 1/2)``, ``a = sqrt(3) sigma``
uniform        linf     ``2 a (1 - (3/2 - rho)^(1/d))``
gen_gaussian   l1       ``a GammaInv(1/beta)(2 rho - 1)^(1/beta)`` for ``beta >= 1``
gen_gaussian   l2       ``sigma Phi^-1(rho)`` for ``beta == 2`` (it is the Gaussian)
pareto         l1       ``a (2 rho - 1) / k 2F1(1, k/(k+1); k/(k+1) + 1; (2 rho - 1)^(1 + 1/k))``
cauchy         -        none (use :mod:`bbdefense.certify.numerical`)
=============  =======  ============================================================

Other norms follow by the norm conversions of :func:`convert_radius` (pitfall 16), which are sound
but loose; the numerical method of DUCD/UniCR gives (approximate) radii for any family and norm.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from scipy.special import gammaincinv, gammaln, hyp2f1
from scipy.stats import norm as _norm
from torch import Tensor

from ..errors import InputError
from ..registry import Registry

NORMS: tuple[str, ...] = ("l1", "l2", "linf")
_Q3 = float(_norm.ppf(0.75))  # 0.6745: the upper quartile of N(0, 1)


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise InputError(f"unknown norm {norm!r}; choose one of: {', '.join(NORMS)}")
    return norm


def convert_radius(r: float, src: str, dst: str, d: int) -> float:
    """A radius certified in ``src`` norm turned into a (sound, looser) radius in ``dst`` norm.

    Uses ``||v||_inf <= ||v||_2 <= ||v||_1 <= sqrt(d) ||v||_2 <= d ||v||_inf``: the ``dst`` ball of the
    returned radius lies inside the ``src`` ball of radius ``r`` (l2 -> l1: r; l2 -> linf: r/sqrt(d);
    l1 -> l2: r/sqrt(d); l1 -> linf: r/d; linf -> l1 and linf -> l2: r).
    """
    check_norm(src), check_norm(dst)
    if src == dst:
        return r
    factor = {("l2", "l1"): 1.0, ("l2", "linf"): 1 / math.sqrt(d), ("l1", "l2"): 1 / math.sqrt(d),
              ("l1", "linf"): 1.0 / d, ("linf", "l1"): 1.0, ("linf", "l2"): 1.0}[(src, dst)]
    return r * factor



def _positive(name: str, value: Any) -> float:
    """``value`` as a float if it is a finite number > 0 (a noise's scale or shape parameter), else
    :class:`~bbdefense.errors.InputError` naming ``name``."""
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)

class Noise:
    """Base class: i.i.d. noise with per-coordinate std ``sigma`` (see the module docstring).

    Subclasses set :attr:`name`, :attr:`scale` (``a``) and implement :meth:`_sample`,
    :meth:`log_density` and, where they exist, :meth:`_closed_form` radii.
    """

    name: ClassVar[str] = "noise"
    finite_variance: ClassVar[bool] = True

    def __init__(self, sigma: float = 0.25) -> None:
        self.sigma = _positive("sigma", sigma)

    # ------------------------------------------------------------------ description
    @property
    def scale(self) -> float:
        """The family's own scale parameter ``a`` (rs4a ``lambd``, UniCR ``alpha``)."""
        return self.sigma

    def params(self) -> dict[str, Any]:
        """Everything needed to rebuild the noise, plus the derived scale ``a`` (for records)."""
        return {"noise": self.name, "sigma": self.sigma, "a": self.scale, **self.extra_params()}

    def extra_params(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.params().items()
                          if k != "noise")
        return f"{type(self).__name__}({inner})"

    # ------------------------------------------------------------------ sampling
    def sample(self, shape: tuple[int, ...] | torch.Size, generator: torch.Generator, *,
               dtype: torch.dtype = torch.float32, scale: Tensor | None = None) -> Tensor:
        """Draw noise of ``shape`` on the generator's device, using only ``generator``.

        ``scale`` ``(C,)``, for a batch shape ``(N, C, ...)``: channel c's draws are multiplied by
        ``scale[c]`` (the per-channel scale of :class:`~bbdefense.certify.Smooth`, ``eps = S u``).
        """
        shape = tuple(int(s) for s in shape)
        eps = self._sample(shape, generator).to(dtype)
        if scale is None:
            return eps
        if len(shape) < 2 or scale.numel() != shape[1]:
            raise InputError(f"scale must hold one value per channel of shape {shape}, got {tuple(scale.shape)}")
        return eps * scale.to(device=eps.device, dtype=eps.dtype).view(-1, *[1] * (len(shape) - 2))

    def sample_into(self, out: Tensor, generator: torch.Generator) -> Tensor:
        """Fill ``out`` (float32, on the generator's device) with the draws :meth:`sample` would return for
        ``out.shape`` from the same generator state, bit for bit; families with an in-place sampler
        (Gaussian, uniform) then allocate nothing (the certify loop reuses one buffer per stream)."""
        return out.copy_(self._sample(tuple(out.shape), generator))

    def _sample(self, shape: tuple[int, ...], g: torch.Generator) -> Tensor:
        raise NotImplementedError

    def log_density(self, x: Tensor) -> Tensor:
        """Per-coordinate log density up to an additive constant (elementwise; ``-inf`` off the support)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ radii
    def _closed_form(self, rho: float, norm: str, d: int) -> float | None:
        """Direct closed-form binary radius in ``norm``, or None where the family has none."""
        return None

    def closed_form_norms(self) -> tuple[str, ...]:
        return tuple(n for n in NORMS if self._closed_form(0.75, n, 2) is not None)

    def radius(self, p_lower: float, norm: str, d: int) -> tuple[float, str] | None:
        """Best sound radius in ``norm`` from the closed forms and the norm conversions.

        Args:
            p_lower: lower confidence bound on pA (binary case, pB = 1 - pA).
            norm: ``"l1"``, ``"l2"`` or ``"linf"``.
            d: input dimension (C * H * W).

        Returns:
            ``(radius, method)`` with method ``"closed"`` or ``"from_<norm>"``; ``(0.0, "abstain")``
            when ``p_lower <= 1/2``; None when no closed form of this family covers ``norm``.
        """
        check_norm(norm)
        if d < 1:
            raise InputError(f"d must be >= 1, got {d}")
        if not (0.0 <= p_lower <= 1.0):
            raise InputError(f"p_lower must be in [0, 1], got {p_lower!r}")
        direct = {n: r for n in NORMS if (r := self._closed_form(p_lower, n, d)) is not None} \
            if p_lower > 0.5 else {}
        if p_lower <= 0.5:
            return (0.0, "abstain") if self.closed_form_norms() else None
        if not direct:
            return None
        best: tuple[float, str] | None = None
        for src, r in direct.items():
            val = convert_radius(r, src, norm, d)
            tag = "closed" if src == norm else f"from_{src}"
            if best is None or val > best[0] or (val == best[0] and tag == "closed"):
                best = (float(val), tag)
        return best

    def p_for_radius(self, r: float, norm: str, d: int, *, tol: float = 1e-12) -> float | None:
        """The smallest pA lower bound whose :meth:`radius` in ``norm`` reaches ``r`` (the inverse of the
        binary radius; sequential certification decides "robust at r" as ``pA > p_for_radius(r)``).

        Bisection on :meth:`radius` (increasing in ``p_lower``), returning the upper end of the final
        bracket so that ``radius(p) >= r`` always holds. ``r <= 0`` gives 1/2; None when no closed form
        covers ``norm``; 1.0 when no ``p < 1`` reaches ``r`` (uniform l1/linf radii are bounded).
        """
        if not (math.isfinite(r)):
            raise InputError(f"radius must be finite, got {r!r}")
        if self.radius(0.75, norm, d) is None:
            return None
        if r <= 0:
            return 0.5

        def reach(p: float) -> float:
            got = self.radius(p, norm, d)
            return -math.inf if got is None else got[0]

        lo, hi = 0.5, 1.0 - 1e-16
        if reach(hi) < r:
            return 1.0
        while hi - lo > tol:
            mid = 0.5 * (lo + hi)
            if reach(mid) >= r:
                hi = mid
            else:
                lo = mid
        return hi


NOISES: Registry[type[Noise]] = Registry("noise")


def make_noise(name: str, sigma: float = 0.25, **params: Any) -> Noise:
    """Build a registered noise: ``make_noise("gen_gaussian", sigma=0.25, beta=1.5)``.

    Unknown names raise :class:`~bbdefense.errors.UnknownNameError`; unknown parameters an InputError.
    """
    cls = NOISES[name]
    try:
        return cls(sigma=sigma, **params)
    except TypeError as exc:
        raise InputError(f"bad parameters {params} for noise {name!r}: {exc}") from None


@NOISES.register("gaussian")
class Gaussian(Noise):
    """``N(0, sigma^2 I)`` (Cohen et al. 2019); l2 radius ``sigma Phi^-1(rho)``."""

    name = "gaussian"

    def _sample(self, shape: tuple[int, ...], g: torch.Generator) -> Tensor:
        return torch.randn(shape, generator=g, device=g.device) * self.sigma

    def sample_into(self, out: Tensor, generator: torch.Generator) -> Tensor:
        return torch.randn(out.shape, generator=generator, out=out).mul_(self.sigma)

    def log_density(self, x: Tensor) -> Tensor:
        return -0.5 * (x / self.sigma) ** 2

    def _closed_form(self, rho: float, norm: str, d: int) -> float | None:
        return self.sigma * float(_norm.ppf(rho)) if norm == "l2" else None


@NOISES.register("laplace")
class Laplace(Noise):
    """Density ``exp(-|x| / b)``, ``b = sigma / sqrt(2)``; l1 radius ``-b log(2(1 - rho))`` (Teng et al. 2020)."""

    name = "laplace"

    @property
    def scale(self) -> float:
        return self.sigma / math.sqrt(2.0)

    def _sample(self, shape: tuple[int, ...], g: torch.Generator) -> Tensor:
        e = torch.empty(shape, device=g.device).exponential_(generator=g)
        s = torch.randint(0, 2, shape, generator=g, device=g.device) * 2 - 1
        return e * s * self.scale

    def log_density(self, x: Tensor) -> Tensor:
        return -x.abs() / self.scale

    def _closed_form(self, rho: float, norm: str, d: int) -> float | None:
        return -self.scale * math.log(2.0 * (1.0 - rho)) if norm == "l1" else None


def _std_gamma(k: float, shape: tuple[int, ...], g: torch.Generator) -> Tensor:
    """Gamma(k, 1) samples drawn with ``g`` only (Marsaglia & Tsang 2000; boost ``U^(1/k)`` for k < 1)."""
    boost = k < 1.0
    kk = k + 1.0 if boost else k
    dd = kk - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * dd)
    n = math.prod(shape)
    out = torch.empty(n, device=g.device)
    todo = torch.arange(n, device=g.device)
    while todo.numel():
        m = todo.numel()
        x = torch.randn(m, generator=g, device=g.device)
        u = torch.rand(m, generator=g, device=g.device)
        v = (1.0 + c * x) ** 3
        ok = (v > 0) & (torch.log(u.clamp_min(1e-38)) < 0.5 * x * x + dd - dd * v
                        + dd * torch.log(v.clamp_min(1e-38)))
        out[todo[ok]] = dd * v[ok]
        todo = todo[~ok]
    if boost:
        u = torch.rand(n, generator=g, device=g.device).clamp_min(1e-38)
        out = out * u ** (1.0 / k)
    return out.reshape(shape)


@NOISES.register("gen_gaussian")
class GenGaussian(Noise):
    """Generalized Gaussian ``exp(-|x / a|^beta)``, ``a = sigma sqrt(Gamma(1/beta) / Gamma(3/beta))``.

    ``beta = 1`` is the Laplace, ``beta = 2`` the Gaussian (``a = sqrt(2) sigma``). Sampling:
    ``|x| / a = G^(1/beta)`` with ``G ~ Gamma(1/beta, 1)`` and a random sign (rs4a ``Expp``).
    l1 radius for ``beta >= 1``: ``a GammaInv(1/beta)(2 rho - 1)^(1/beta)`` (rs4a ``Expp.certify_l1``).
    """

    name = "gen_gaussian"

    def __init__(self, sigma: float = 0.25, beta: float = 2.0) -> None:
        super().__init__(sigma)
        self.beta = _positive("beta", beta)

    @property
    def scale(self) -> float:
        b = self.beta
        return self.sigma * math.exp(0.5 * (gammaln(1.0 / b) - gammaln(3.0 / b)))

    def extra_params(self) -> dict[str, Any]:
        return {"beta": self.beta}

    def _sample(self, shape: tuple[int, ...], g: torch.Generator) -> Tensor:
        mag = _std_gamma(1.0 / self.beta, shape, g) ** (1.0 / self.beta)
        s = torch.randint(0, 2, shape, generator=g, device=g.device) * 2 - 1
        return mag * s * self.scale

    def log_density(self, x: Tensor) -> Tensor:
        return -((x.abs() / self.scale) ** self.beta)

    def _closed_form(self, rho: float, norm: str, d: int) -> float | None:
        if norm == "l1" and self.beta >= 1.0:
            return self.scale * float(gammaincinv(1.0 / self.beta, 2.0 * rho - 1.0)) ** (1.0 / self.beta)
        if norm == "l2" and self.beta == 2.0:
            return self.sigma * float(_norm.ppf(rho))
        return None


@NOISES.register("uniform")
class Uniform(Noise):
    """Uniform on ``[-a, a]^d``, ``a = sqrt(3) sigma``; l1 ``2a(rho - 1/2)``, linf ``2a(1 - (3/2 - rho)^(1/d))``."""

    name = "uniform"

    @property
    def scale(self) -> float:
        return math.sqrt(3.0) * self.sigma

    def _sample(self, shape: tuple[int, ...], g: torch.Generator) -> Tensor:
        return (torch.rand(shape, generator=g, device=g.device) * 2.0 - 1.0) * self.scale

    def sample_into(self, out: Tensor, generator: torch.Generator) -> Tensor:
        return torch.rand(out.shape, generator=generator, out=out).mul_(2.0).sub_(1.0).mul_(self.scale)

    def log_density(self, x: Tensor) -> Tensor:
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        return torch.where(x.abs() <= self.scale, zero, torch.full_like(zero, -math.inf))

    def _closed_form(self, rho: float, norm: str, d: int) -> float | None:
        if norm == "l1":
            return 2.0 * self.scale * (rho - 0.5)
        if norm == "linf":
            return 2.0 * self.scale * (1.0 - (1.5 - rho) ** (1.0 / d))
        return None


@NOISES.register("cauchy")
class Cauchy(Noise):
    """Cauchy ``1 / (1 + (x / g)^2)``. No variance: IQR convention ``g = Phi^-1(3/4) sigma = 0.6745 sigma``
    (same quartiles as ``N(0, sigma^2)``). No closed-form radius: numerical only."""

    name = "cauchy"
    finite_variance = False

    @property
    def scale(self) -> float:
        return _Q3 * self.sigma

    def _sample(self, shape: tuple[int, ...], g: torch.Generator) -> Tensor:
        u = torch.rand(shape, generator=g, device=g.device, dtype=torch.float64)
        return torch.tan(math.pi * (u - 0.5)).to(torch.float32) * self.scale

    def log_density(self, x: Tensor) -> Tensor:
        return -torch.log1p((x / self.scale) ** 2)

    def closed_form_norms(self) -> tuple[str, ...]:
        return ()


@NOISES.register("pareto")
class Pareto(Noise):
    """Symmetric Pareto (Lomax) ``(1 + |x| / a)^-(k + 1)`` (rs4a ``Pareto``, UniCR ``Pareto``).

    ``sigma`` is the std ``a sqrt(2 / ((k-1)(k-2)))`` for ``k > 2`` (default ``k = 3``, as rs4a); for
    ``k <= 2`` (UniCR's ``k = 1``) the variance is infinite and the IQR convention applies:
    ``a = 0.6745 sigma / (2^(1/k) - 1)``. l1 radius: rs4a ``Pareto.certify_l1`` (hypergeometric form).
    """

    name = "pareto"

    def __init__(self, sigma: float = 0.25, k: float = 3.0) -> None:
        super().__init__(sigma)
        self.k = _positive("k", k)

    @property
    # A property here (it depends on k) where the base class fixes it per class; callers only read it.
    def finite_variance(self) -> bool:  # type: ignore[override]
        return self.k > 2

    @property
    def scale(self) -> float:
        k = self.k
        if k > 2:
            return self.sigma / math.sqrt(2.0 / ((k - 1.0) * (k - 2.0)))
        return _Q3 * self.sigma / (2.0 ** (1.0 / k) - 1.0)

    def extra_params(self) -> dict[str, Any]:
        return {"k": self.k}

    def _sample(self, shape: tuple[int, ...], g: torch.Generator) -> Tensor:
        u = torch.rand(shape, generator=g, device=g.device, dtype=torch.float64).clamp_min(1e-300)
        mag = (u ** (-1.0 / self.k) - 1.0).to(torch.float32)
        s = torch.randint(0, 2, shape, generator=g, device=g.device) * 2 - 1
        return mag * s * self.scale

    def log_density(self, x: Tensor) -> Tensor:
        return -(self.k + 1.0) * torch.log1p(x.abs() / self.scale)

    def _closed_form(self, rho: float, norm: str, d: int) -> float | None:
        if norm != "l1":
            return None
        k, t = self.k, 2.0 * rho - 1.0
        return float(self.scale * t / k * hyp2f1(1.0, k / (k + 1.0), k / (k + 1.0) + 1.0, t ** (1.0 + 1.0 / k)))


__all__ = ["NOISES", "NORMS", "Cauchy", "Gaussian", "GenGaussian", "Laplace", "Noise", "Pareto", "Uniform",
           "check_norm", "convert_radius", "make_noise"]
