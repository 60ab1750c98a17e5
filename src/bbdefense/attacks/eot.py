"""Expectation over Transformation for randomized models (Athalye, Carlini & Wagner, ICML 2018;
arXiv 1802.00420), as the adaptive score attack of the RFD paper (reference/algorithms.md pitfall 9).

Design: EOT is a **backend and a cost**, not an attack and not a second counter.
``EOTBlackBox(model, m)`` is a view of ``model`` (a plain :class:`BlackBox` sharing its counters and
budgets) whose backend, :class:`EOTBackend`, forwards every image ``m`` times and returns the mean
of the ``m`` outputs as ``model`` reveals them (logits averaged for a logits oracle, probabilities
for a probs one). The backend declares ``cost = m``, so the black box's single counting point
charges ``m`` queries per image. So any score attack runs unchanged on it, and:

* the ``m`` forwards are charged on the wrapped model's counter and budget (one meter);
* ``query_cost = m`` tells attacks that one wrapped query costs ``m`` real queries, so their
  per-image ``max_queries`` stays in real queries and the number of iterations is divided by ``m``
  (RFD's ``n_iters // M``);
* ``audit`` (verification by the evaluator) goes to the wrapped model **once**, without averaging
  (the backend's ``audit_backend``): success is judged on the real randomized model, with the
  attack's ``criterion``.
"""

from __future__ import annotations

from torch import Tensor

from ..errors import AccessError, InputError
from ..models import BlackBox


class RevealedBackend:
    """``model``'s backend seen through what ``model`` reveals (logits, or its top-k probabilities):
    a backend whose native output is ``model.output``. Computes only; never counts."""

    def __init__(self, model: BlackBox) -> None:
        self.model = model
        self.inner = model.backend
        self.returns = model.output
        self.device = self.inner.device
        max_batch = getattr(self.inner, "max_batch", None)
        if max_batch:
            self.max_batch = int(max_batch)

    @property
    def randomized(self) -> bool:
        return bool(self.inner.randomized)

    @property
    def remote(self) -> bool:
        return self.model.remote

    def forward(self, x: Tensor) -> Tensor:
        return self.model.reveal(self.inner.forward(x))


class EOTBackend:
    """The mean of ``m`` forwards of ``base`` per image, at ``cost = m`` per image.

    Shape: ``(N, C, H, W)`` -> ``(N, K)``: ``mean_j base(x)_j`` over ``m`` draws (one batched call of
    ``m N`` images). ``audit_backend`` is ``base`` itself (one pass, cost 1). With a ``max_batch``
    on ``base``, this backend takes ``max_batch // m`` images per call (each call sends ``m`` times that).
    """

    def __init__(self, base: RevealedBackend, m: int) -> None:
        self.base, self.m = base, int(m)
        self.returns = base.returns
        self.device = base.device
        self.cost = self.m
        self.audit_backend = base
        self.remote = base.remote
        max_batch = getattr(base, "max_batch", None)
        if max_batch:
            self.max_batch = max(1, int(max_batch) // self.m)

    @property
    def randomized(self) -> bool:
        return self.base.randomized

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        out = self.base.forward(x.repeat(self.m, 1, 1, 1))
        return out.view(self.m, n, -1).mean(dim=0)


class EOTBlackBox(BlackBox):
    """A black box whose outputs are the mean of ``m`` queries of ``model`` (charged ``m`` each, on
    ``model``'s own counters: ``stats``, ``budget`` and ``reset_stats`` are the wrapped model's).

    Args:
        model: a score oracle (``output`` ``"logits"`` or ``"probs"``), typically randomized.
        m: number of samples averaged per query (RFD uses M in {1, 5, 10, ...}).

    Shape: ``query``: ``(N, C, H, W)`` -> ``(N, K)`` (mean of ``m`` outputs); ``audit``: one pass
    of the wrapped model.

    Example:
        >>> eot = EOTBlackBox(noisy_model, m=10)
        >>> res = ATTACKS["square"](eps=0.1, max_queries=1000).run(eot, x, y)  # ~100 iterations
    """

    def __init__(self, model: BlackBox, m: int = 10) -> None:
        if not isinstance(model, BlackBox):
            raise InputError(f"EOTBlackBox wraps a BlackBox, got {type(model).__name__}")
        if not model.reveals_scores:
            raise AccessError(f"EOT averages scores; the model reveals only {model.output}")
        if not isinstance(m, int) or m < 1:
            raise InputError(f"EOT needs m >= 1 samples, got {m!r}")
        self.inner = model
        self.m = m
        # the averaged outputs are already revealed (top-k applied per draw): no second top-k here
        super().__init__(EOTBackend(RevealedBackend(model), m), num_classes=model.num_classes,
                         input_shape=model.input_shape, output=model.output,
                         name=f"eot{m}({model.name})",
                         remote=model.remote, share_counters_with=model, log_queries=model.log_queries)

    def describe(self) -> dict[str, object]:
        d = self.inner.describe()
        d.update(name=self.name, eot_samples=self.m)
        return d


__all__ = ["EOTBackend", "EOTBlackBox", "RevealedBackend"]
