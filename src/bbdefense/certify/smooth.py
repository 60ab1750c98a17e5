"""Randomized smoothing over any :class:`~bbdefense.models.BlackBox`: Cohen et al. PREDICT and CERTIFY.

``g(x) = argmax_c P(f(x + eps) = c)``, ``eps ~ noise`` (Cohen, Rosenfeld & Kolter, ICML 2019,
Algorithm "CERTIFY"/"PREDICT"; reference locuslab/smoothing ``code/core.py`` at 78a4d94):

* CERTIFY: ``n0`` noisy draws select ``cA = argmax counts0``; ``n`` **separate** draws estimate
  ``pA_lower = CP_lower(counts[cA], n, alpha)`` (one-sided, level 1 - alpha); abstain if
  ``pA_lower < 1/2``, else return cA with the radius of the noise family per norm. With probability
  at least 1 - alpha (over the noise), a returned cA is g's prediction and g is constant on the ball.
* PREDICT: ``n`` draws, top-two counts nA, nB; abstain unless the two-sided binomial test
  ``binomtest(nA, nA + nB, 1/2)`` has p-value <= alpha (then P(returning a class != g(x)) <= alpha).

Batched over images *and* noise draws with bounded memory: noise is drawn in fixed blocks per
image, packed into forward batches of ``batch_size`` noisy images from one or several inputs, and
class counts are accumulated incrementally (never an ``n``-fold copy of the data). Every noisy image
is one query charged on the black box (so budgets, ``stats`` and remote APIs work). Each image's
noise comes from its own generator derived from ``(seed, index, phase)``, so results do not depend
on ``batch_size`` or on how images are grouped (pass ``indices`` to keep them stable across chunks).

Noisy inputs are **not clipped** (as Cohen); ``clip=True`` clamps them to [0, 1] (needed by APIs that
refuse other values): the certificate then holds for the smoothing of ``f(clip(.))``, still sound.

``pre`` (denoised smoothing: Salman et al. 2020, ZO-AE-DS, IRS-Net) is a defender-side map applied to
each noisy image *after* the noise and before the black box, ``g(x) = argmax_c P(f(pre(x + eps)) = c)``;
its output is clamped to [0, 1]. The certificate is then one of ``f o pre``, sound for any fixed ``pre``.

``scale`` (a ``(C,)`` vector of positive floats) makes the noise anisotropic per channel: each draw is
multiplied by ``scale[c]`` on channel c, ``eps = S u`` with ``u ~ noise`` i.i.d. and ``S = diag(scale)``
broadcast over the pixels of each channel (IRS-Net: noise of std sigma on the *normalised* image
``(x - mean) / std`` is pixel noise of std ``sigma * std_c``, so ``scale = std``). Certified radii are
``R(pA) * min(scale)`` in every norm, where ``R`` is the isotropic family's radius. Soundness: in the
coordinates ``z = S^-1 x`` the smoothed classifier ``g(x) = argmax_c P(f(x + S u) = c)`` is the isotropic
smoothing ``h(z) = argmax_c P(f'(z + u) = c)`` of ``f' = f o S`` (any fixed map of z, so clip and pre
are folded into it), which is certified constant on ``{z' : ||z' - z||_p <= R}``. A pixel perturbation
``dx`` moves z by ``dz = S^-1 dx`` with ``||dz||_p <= ||dx||_p / min(scale)`` (each coordinate shrinks by
at least that factor), so every ``x'`` with ``||x' - x||_p <= R * min(scale)`` maps into the z-ball and
keeps the label. The bound is tight only along the channel of smallest scale.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from ..errors import InputError
from ..events import EventCallback, emit
from ..models.blackbox import BlackBox
from ..models.validation import validate_images
from .noises import NORMS, Noise, check_norm
from .sequential import BetaMixture, SequentialTest, robust_index
from .stats import binom_pvalue, cp_lower, cp_lower_randomized
from .streams import NoiseStream, add_counts, check_scale, image_seed, pack

RadiusMethod = Literal["auto", "closed", "numerical"]
Method = Literal["cohen", "sequential"]


@dataclass
class Certificate:
    """The outcome of CERTIFY for one input.

    ``label`` is -1 on abstention (then ``abstain`` is True and every radius is 0.0).
    ``radius`` maps "l1"/"l2"/"linf" to a certified radius in [0, 1] pixel space;
    ``radius_method`` says how each was obtained ("closed", "from_l2"..., "numerical");
    ``approximate`` is True when any radius comes from the Monte-Carlo numerical method (DUCD/UniCR),
    which is not a sound certificate. ``counts`` are the estimation counts per class (length K),
    ``counts0`` the selection counts. ``method`` is ``"cohen"``, ``"cohen_randomized"`` (randomized
    Clopper-Pearson) or ``"sequential"``; a sequential certificate's ``n`` is the estimation draws it spent
    and ``decisions`` maps each tested radius (``f"{r:g}"``, in ``decision_norm``; "0" is the prediction
    itself) to ``"robust"``, ``"not_robust"`` or ``"undecided"`` (not decidable within ``max_n``).
    """

    label: int
    pA_lower: float
    radius: dict[str, float]
    counts: list[int]
    n0: int
    n: int
    abstain: bool
    approximate: bool = False
    counts0: list[int] = field(default_factory=list)
    radius_method: dict[str, str] = field(default_factory=dict)
    alpha: float = 0.001
    method: str = "cohen"
    decisions: dict[str, str] = field(default_factory=dict)
    decision_norm: str | None = None

    @property
    def queries(self) -> int:
        """Noisy queries this certificate cost (selection + estimation)."""
        return self.n0 + self.n

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Smooth:
    """The smoothed classifier of a black box under a noise (see the module docstring).

    Args:
        model: the base classifier, queried only through ``model.query`` (every noisy image counted).
        noise: a :class:`~bbdefense.certify.noises.Noise` (e.g. ``make_noise("gaussian", sigma=0.25)``).
        norms: the norms to certify (default all of l1, l2, linf).
        radius_method: ``"auto"`` closed forms and norm conversions where the family has them, the
            numerical method otherwise; ``"closed"`` closed forms only (NaN where none);
            ``"numerical"`` the DUCD/UniCR numerical method for every norm (approximate).
        numerical: keyword arguments of :func:`bbdefense.certify.numerical.numerical_radius`.
        clip: clamp noisy inputs to [0, 1] (see the module docstring).
        pre: a deterministic pre-processor (e.g. a denoiser) ``(M, *input_shape) -> (M, *input_shape)``
            applied to the noisy images before the black box, without gradients; its output is clamped
            to [0, 1]. ``None`` (default): plain randomized smoothing.
        scale: per-channel noise scale ``(C,)`` (tensor or sequence of positive finite floats, C =
            ``input_shape[0]``): channel c gets noise ``scale[c] * eps``; radii are multiplied by
            ``min(scale)`` (see the module docstring). ``None`` (default): isotropic noise.
    """

    def __init__(self, model: BlackBox, noise: Noise, *, norms: Sequence[str] = NORMS,
                 radius_method: RadiusMethod = "auto", numerical: dict[str, Any] | None = None,
                 clip: bool = False, pre: Callable[[Tensor], Tensor] | None = None,
                 scale: Tensor | Sequence[float] | None = None) -> None:
        if not isinstance(model, BlackBox):
            raise InputError(f"Smooth needs a BlackBox, got {type(model).__name__}")
        if not isinstance(noise, Noise):
            raise InputError(f"Smooth needs a Noise (see bbdefense.certify.make_noise), got {type(noise).__name__}")
        if radius_method not in ("auto", "closed", "numerical"):
            raise InputError(f"radius_method must be auto, closed or numerical, got {radius_method!r}")
        self.model = model
        self.noise = noise
        self.norms = tuple(check_norm(n) for n in norms)
        if not self.norms:
            raise InputError("norms must name at least one of l1, l2, linf")
        self.radius_method = radius_method
        self.numerical_kw = dict(numerical or {})
        self.clip = bool(clip)
        if pre is not None and not callable(pre):
            raise InputError("pre must be callable (a pre-processor applied after the noise), "
                             f"got {type(pre).__name__}")
        self.pre = pre
        self.dim = int(math.prod(model.input_shape))
        self.scale = check_scale(scale, tuple(model.input_shape))
        self.radius_factor = 1.0 if self.scale is None else float(self.scale.min())
        self._num_cache: dict[tuple[float, str], float] = {}

    # ------------------------------------------------------------------ sampling core
    def _check(self, x: Tensor, n: int, batch_size: int, alpha: float, indices: Sequence[int] | None) -> list[int]:
        validate_images(x, self.model.input_shape)
        for name, v in (("n", n), ("batch_size", batch_size)):
            if not (isinstance(v, int) and v >= 1):
                raise InputError(f"{name} must be an integer >= 1, got {v!r}")
        if not (0.0 < alpha < 1.0):
            raise InputError(f"alpha must be in (0, 1), got {alpha!r}")
        ids = list(range(x.shape[0])) if indices is None else [int(i) for i in indices]
        if len(ids) != x.shape[0]:
            raise InputError(f"indices has {len(ids)} entries for {x.shape[0]} images")
        return ids

    def _expect(self, queries: int) -> None:
        """Tell the black box's backend the plan (``backend="auto"`` then picks its path for the whole call)."""
        expect = getattr(self.model.backend, "expect", None)
        if callable(expect):
            expect(int(queries) * self.model.query_cost)

    def sample_counts(self, x: Tensor, n: int, *, seed: int = 0, phase: int = 1, batch_size: int = 1000,
                      indices: Sequence[int] | None = None, on_event: EventCallback | None = None) -> Tensor:
        """Class counts ``(N, K)`` int64 of ``f(x_i + eps)`` over ``n`` noisy draws per image.

        Charges exactly ``N * n`` queries on the model. Memory is ``O(batch_size + block)`` noisy images.
        Labels outside ``[0, K)`` (an abstaining randomized base model) are counted for no class.
        """
        ids = self._check(x, n, batch_size, 0.5, indices)
        N = x.shape[0]
        self._expect(N * n)
        counts = torch.zeros(N, self.model.num_classes, dtype=torch.int64)
        streams = [NoiseStream(self.noise, self.scale, x, image_seed(seed, i, phase), n) for i in ids]
        pending: deque[list[int]] = deque([i, n] for i in range(N))
        sizes = [min(batch_size, N * n - done) for done in range(0, N * n, batch_size)]
        emit(on_event, "start", "smooth", total=N * n, unit="noisy queries")
        if len(sizes) < 3:  # nothing to overlap
            for size in sizes:
                add_counts(counts, *self._forward_batch(*pack(x, streams, pending, size, self.clip), on_event))
        else:
            # the schedule is fixed, so the next batch is drawn and packed on a second thread while this one is
            # forwarded (the draws and their order are those of the sequential loop: one producer, in order)
            with ThreadPoolExecutor(1, thread_name_prefix="bbdefense-noise") as pool:
                nxt = pool.submit(pack, x, streams, pending, sizes[0], self.clip)
                for j in range(len(sizes)):
                    own, xb = nxt.result()
                    if j + 1 < len(sizes):
                        nxt = pool.submit(pack, x, streams, pending, sizes[j + 1], self.clip)
                    add_counts(counts, *self._forward_batch(own, xb, on_event))
        emit(on_event, "end", "smooth")
        return counts

    def _forward_batch(self, own: Tensor, xb: Tensor, on_event: EventCallback | None) -> tuple[Tensor, Tensor]:
        """Labels ``(size,)`` of a packed batch (``pre`` applied, one charged query per image), with its owners."""
        bounded = self.clip
        if self.pre is not None:
            with torch.no_grad():
                xb = self.pre(xb).clamp(0.0, 1.0)
            bounded = True
        labels = self.model.predict_label(xb, bounded=bounded).reshape(-1).long().cpu()
        emit(on_event, "advance", "smooth", n=int(xb.shape[0]))
        return own, labels

    # ------------------------------------------------------------------ Cohen's procedures
    def certify(self, x: Tensor, *, n0: int = 100, n: int = 10_000, alpha: float = 0.001, batch_size: int = 1000,
                seed: int = 0, indices: Sequence[int] | None = None, on_event: EventCallback | None = None,
                method: Method = "cohen", randomized: bool = False, radii: Sequence[float] = (0.25, 0.5, 1.0),
                norm: str | None = None, max_n: int = 100_000,
                mixture: BetaMixture | None = None) -> list[Certificate]:
        """Certify each image of ``x`` ``(N, C, H, W)``.

        ``method="cohen"``: Cohen CERTIFY, ``N * (n0 + n)`` queries; ``randomized=True`` replaces the
        Clopper-Pearson bound by the randomized one (:func:`~bbdefense.certify.stats.cp_lower_randomized`,
        exact coverage 1 - alpha, never a smaller radius; its uniform is drawn per image from
        ``image_seed(seed, index, 4)``). ``method="sequential"``: :meth:`certify_at` at ``radii`` (in
        ``norm``) with at most ``max_n`` estimation draws per image (``n`` is then unused): the
        certificate's radius is the largest radius decided robust (other norms by the usual conversions).
        """
        if method == "sequential":
            return self.certify_at(x, radii, n0=n0, max_n=max_n, alpha=alpha, batch_size=batch_size, seed=seed,
                                   indices=indices, on_event=on_event, norm=norm, mixture=mixture)
        if method != "cohen":
            raise InputError(f"method must be cohen or sequential, got {method!r}")
        ids = self._check(x, n0, batch_size, alpha, indices)
        self._check(x, n, batch_size, alpha, indices)
        self._expect(x.shape[0] * (n0 + n))
        c0 = self.sample_counts(x, n0, seed=seed, phase=0, batch_size=batch_size, indices=ids, on_event=on_event)
        c = self.sample_counts(x, n, seed=seed, phase=1, batch_size=batch_size, indices=ids, on_event=on_event)
        out = []
        for i in range(x.shape[0]):
            ca = int(torch.argmax(c0[i]))  # ties -> lowest class index (as numpy argmax in core.py)
            if randomized:
                u = float(torch.rand((), generator=torch.Generator().manual_seed(image_seed(seed, ids[i], 4))))
                p_low = cp_lower_randomized(int(c[i, ca]), n, alpha, u)
            else:
                p_low = cp_lower(int(c[i, ca]), n, alpha)
            cert = self.make_certificate(ca, p_low, c[i].tolist(), c0[i].tolist(), n0, n, alpha)
            cert.method = "cohen_randomized" if randomized else "cohen"
            out.append(cert)
        return out

    # ------------------------------------------------------------------ sequential decisions
    def decision_norm(self, norm: str | None = None) -> str:
        """The norm sequential radii are given in: ``norm``, else the first of :attr:`norms` with a closed form."""
        if norm is not None:
            return check_norm(norm)
        closed = self.noise.closed_form_norms()
        for nm in self.norms:
            if nm in closed:
                return nm
        for nm in self.norms:
            if self.noise.radius(0.75, nm, self.dim) is not None:
                return nm
        raise InputError(f"sequential certification needs a closed-form radius; noise {self.noise.name!r} has "
                         f"none for norms {list(self.norms)}")

    def p_for_radius(self, r: float, norm: str) -> float:
        """The pA above which this smoother certifies radius ``r`` in ``norm`` (scale-aware; 1.0: unreachable)."""
        if self.radius_method == "numerical":
            raise InputError("sequential certification needs closed-form radii, not radius_method='numerical'")
        p = self.noise.p_for_radius(float(r) / self.radius_factor, norm, self.dim)
        if p is None:
            raise InputError(f"noise {self.noise.name!r} has no closed-form radius in {norm}; sequential "
                             "certification needs one")
        return p

    def certify_at(self, x: Tensor, radius: float | Sequence[float], *, n0: int = 100, max_n: int = 100_000,
                   alpha: float = 0.001, batch_size: int = 1000, seed: int = 0,
                   indices: Sequence[int] | None = None, on_event: EventCallback | None = None,
                   norm: str | None = None, mixture: BetaMixture | None = None) -> list[Certificate]:
        """Decide "is x robust at ``radius``?" per image with the anytime-valid test of
        :mod:`bbdefense.certify.sequential` (``radius``: one or several, in ``norm``).

        ``n0`` selection draws (phase 0, as Cohen) pick ``cA``; estimation draws (phase 1: the same stream
        as Cohen's with ``n = max_n``) are requested per image only as far as its open decisions need, at
        most ``max_n``, and packed into full forward batches of ``batch_size`` from all undecided images
        (refilled as images finish). ``cert.decisions[f"{r:g}"]`` is robust / not_robust / undecided, each
        wrong with probability <= ``alpha`` (all robust claims of an image jointly); ``cert.n`` the draws
        spent; decisions and samples do not depend on ``batch_size`` or on the grouping of images.
        """
        rs = sorted({float(r) for r in ([radius] if isinstance(radius, (int, float)) else radius)})
        if any(not (math.isfinite(r) and r >= 0) for r in rs):
            raise InputError(f"radii must be finite and >= 0, got {rs}")
        rs = [r for r in rs if r > 0]
        ids = self._check(x, n0, batch_size, alpha, indices)
        self._check(x, max_n, batch_size, alpha, indices)
        self._expect(x.shape[0] * (n0 + max_n))
        dnorm = self.decision_norm(norm)
        p0s = [0.5] + [self.p_for_radius(r, dnorm) for r in rs]
        mix = mixture or BetaMixture()
        c0 = self.sample_counts(x, n0, seed=seed, phase=0, batch_size=batch_size, indices=ids, on_event=on_event)
        top = torch.argmax(c0, dim=1)
        N = x.shape[0]
        tests = [SequentialTest(p0s, alpha, max_n, mix) for _ in range(N)]
        counts = torch.zeros(N, self.model.num_classes, dtype=torch.int64)
        streams = [NoiseStream(self.noise, self.scale, x, image_seed(seed, i, 1), max_n) for i in ids]
        pending: deque[list[int]] = deque()
        got: dict[int, list[Tensor]] = {}
        wait = [0] * N
        buffered = 0

        def request(i: int) -> int:
            k = tests[i].next_request()
            if k:
                pending.append([i, k])
                wait[i], got[i] = k, []
            return k

        emit(on_event, "start", "sequential", total=N, unit="images")
        for i in range(N):
            buffered += request(i)
        while buffered:
            own, labels = self._forward_batch(*pack(x, streams, pending, min(batch_size, buffered), self.clip),
                                              on_event)
            buffered -= own.numel()
            add_counts(counts, own, labels)
            # an image has at most one open request, so its labels in a batch are one contiguous run
            ids_run, lens = torch.unique_consecutive(own, return_counts=True)
            for i, li in zip(ids_run.tolist(), labels.split(lens.tolist()), strict=True):
                got[i].append(li)
                wait[i] -= li.numel()
                if wait[i] == 0:
                    tests[i].update((torch.cat(got[i]) == top[i]).numpy())
                    k = request(i)
                    buffered += k
                    if not k:
                        emit(on_event, "advance", "sequential", n=1, queries=n0 + tests[i].t)
        emit(on_event, "end", "sequential")
        return [self._sequential_certificate(int(top[i]), tests[i], rs, dnorm, counts[i].tolist(), c0[i].tolist(),
                                             n0, alpha) for i in range(N)]

    def _sequential_certificate(self, label: int, test: SequentialTest, rs: list[float], dnorm: str,
                                counts: list[int], counts0: list[int], n0: int, alpha: float) -> Certificate:
        k = robust_index(test.status)
        decisions = {f"{r:g}": st for r, st in zip([0.0, *rs], test.status, strict=True)}
        if k < 0:
            return Certificate(-1, 0.0, dict.fromkeys(self.norms, 0.0), counts, n0, test.t, True, False, counts0,
                               dict.fromkeys(self.norms, "abstain"), alpha, "sequential", decisions, dnorm)
        p = test.p0s[k]
        radius, method = {}, {}
        for nm in self.norms:
            radius[nm], method[nm] = (0.0, "closed") if k == 0 else self.radius(p, nm)
        if k > 0 and dnorm in radius:
            radius[dnorm] = rs[k - 1]  # the tested radius itself (p is its inverse, up to rounding)
        approx = any(m == "numerical" for m in method.values())
        return Certificate(label, p, radius, counts, n0, test.t, False, approx, counts0, method, alpha,
                           "sequential", decisions, dnorm)

    def make_certificate(self, label: int, p_lower: float, counts: list[int], counts0: list[int], n0: int, n: int,
                         alpha: float) -> Certificate:
        """Certificate for class ``label`` with pA lower bound ``p_lower`` (abstains below 1/2)."""
        if p_lower < 0.5:
            return Certificate(-1, p_lower, dict.fromkeys(self.norms, 0.0), counts, n0, n, True, False, counts0,
                               dict.fromkeys(self.norms, "abstain"), alpha)
        radius, method = {}, {}
        for norm in self.norms:
            r, m = self.radius(p_lower, norm)
            radius[norm], method[norm] = r, m
        approx = any(m == "numerical" for m in method.values())
        return Certificate(int(label), p_lower, radius, counts, n0, n, False, approx, counts0, method, alpha)

    def radius(self, p_lower: float, norm: str) -> tuple[float, str]:
        """``(radius, method)`` for a pA lower bound under this smoother's ``radius_method``.

        The isotropic family's radius times ``min(scale)`` when a per-channel ``scale`` is set.
        """
        r, method = self._iso_radius(p_lower, norm)
        if self.scale is None:
            return r, method
        return r * self.radius_factor, method

    def _iso_radius(self, p_lower: float, norm: str) -> tuple[float, str]:
        """The radius of the isotropic noise family (in the coordinates ``z = x / scale``)."""
        closed = self.noise.radius(p_lower, norm, self.dim) if self.radius_method != "numerical" else None
        if closed is not None:
            return closed
        if self.radius_method == "closed":
            return math.nan, "none"
        from .numerical import numerical_radius

        key = (round(float(p_lower), 12), norm)
        if key not in self._num_cache:
            r = numerical_radius(self.noise, p_lower, norm, self.dim, **self.numerical_kw)
            self._num_cache[key] = 0.0 if not math.isfinite(r) else r  # failure -> 0 (conservative)
        return self._num_cache[key], "numerical"

    def predict(self, x: Tensor, *, n: int = 10_000, alpha: float = 0.001, batch_size: int = 1000, seed: int = 0,
                indices: Sequence[int] | None = None, on_event: EventCallback | None = None) -> Tensor:
        """Cohen PREDICT: ``(N,)`` int64 labels, -1 where the binomial test does not reject (abstain)."""
        ids = self._check(x, n, batch_size, alpha, indices)
        self._expect(x.shape[0] * n)
        c = self.sample_counts(x, n, seed=seed, phase=2, batch_size=batch_size, indices=ids, on_event=on_event)
        out = torch.full((x.shape[0],), -1, dtype=torch.int64)
        top2 = torch.topk(c, k=min(2, c.shape[1]), dim=1)
        for i in range(x.shape[0]):
            n_a, n_b = int(top2.values[i, 0]), int(top2.values[i, 1]) if c.shape[1] > 1 else 0
            if binom_pvalue(n_a, n_b) <= alpha:
                out[i] = int(top2.indices[i, 0])
        return out.to(x.device)

    # ------------------------------------------------------------------ the smoothed classifier as a model
    def as_blackbox(self, *, n: int = 1000, alpha: float = 0.001, batch_size: int = 1000, seed: int = 0,
                    abstain_label: int = -1, budget: int | None = None, name: str = "smoothed") -> BlackBox:
        """The smoothed classifier as a label-only, randomized :class:`BlackBox` (to attack or serve).

        Each query runs PREDICT with ``n`` fresh noisy draws per image (charged ``n`` queries on the
        base model; the returned black box counts 1 per image). Abstentions return ``abstain_label``
        (-1 by default: an attack sees it as "not the true class"). Successive calls use fresh noise
        (the call number enters the seed).
        """
        state = {"calls": 0}

        def fn(x: Tensor) -> Tensor:
            state["calls"] += 1
            pred = self.predict(x, n=n, alpha=alpha, batch_size=batch_size,
                                seed=image_seed(seed, state["calls"], 3))
            return torch.where(pred < 0, torch.full_like(pred, abstain_label), pred)

        return BlackBox.from_callable(fn, returns="label", num_classes=self.model.num_classes,
                                      input_shape=self.model.input_shape, randomized=True, output="label",
                                      budget=budget, name=name)

    def describe(self) -> dict[str, Any]:
        return {"noise": self.noise.params(), "norms": list(self.norms), "radius_method": self.radius_method,
                "clip": self.clip, "dim": self.dim, "numerical": self.numerical_kw,
                "pre": None if self.pre is None else type(self.pre).__name__,
                "scale": None if self.scale is None else [float(v) for v in self.scale]}


__all__ = ["Certificate", "Smooth", "image_seed"]
