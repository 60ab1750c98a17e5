"""Expectation over Transformation for randomized models (Athalye, Carlini & Wagner, ICML 2018;
arXiv 1802.00420), as the adaptive score attack of the RFD paper (reference/algorithms.md pitfall 9).

Design: EOT is a **model wrapper**, not an attack. ``EOTBlackBox(model, m)`` is itself a
:class:`BlackBox`: each query forwards every image ``m`` times through ``model.query`` and returns
the mean of the ``m`` outputs (logits averaged for a logits oracle, probabilities for a probs one).
So any score attack runs unchanged on it, and:

* the ``m`` forwards are charged on the wrapped model (its counter and budget are the wrapper's:
  ``stats``/``budget`` are the inner model's);
* ``query_cost = m`` tells attacks that one wrapped query costs ``m`` real queries, so their
  per-image ``max_queries`` stays in real queries and the number of iterations is divided by ``m``
  (RFD's ``n_iters // M``);
* ``audit`` (verification by the evaluator) goes to the wrapped model **once**, without averaging:
  success is judged on the real randomized model, with the attack's ``criterion``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import AccessError, InputError
from ..models import BlackBox, validate_images
from ..models.blackbox import QueryStats


class _EOTBackend:
    def __init__(self, inner: BlackBox, m: int) -> None:
        self.inner, self.m = inner, m
        self.returns = inner.output
        self.device = torch.device("cpu")

    @property
    def randomized(self) -> bool:
        return self.inner.randomized

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        out = self.inner.query(x.repeat(self.m, 1, 1, 1))
        return out.view(self.m, n, -1).mean(dim=0)


class EOTBlackBox(BlackBox):
    """A black box whose outputs are the mean of ``m`` queries of ``model`` (charged ``m`` each).

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
        super().__init__(_EOTBackend(model, m), num_classes=model.num_classes, input_shape=model.input_shape,
                         output=model.output, name=f"eot{m}({model.name})")

    @property
    def remote(self) -> bool:  # type: ignore[override]
        """The wrapped model's: audits of a remote API are charged."""
        return self.inner.remote

    @property
    def query_cost(self) -> int:
        """Real queries charged per image per query of the wrapper."""
        return self.m

    @property
    def stats(self) -> QueryStats:
        return self.inner.stats

    @property
    def budget(self) -> int | None:  # type: ignore[override]
        return self.inner.budget

    @budget.setter
    def budget(self, value: int | None) -> None:
        if value is not None:
            self.inner.budget = value

    def reset_stats(self) -> None:
        self.inner.reset_stats()

    def query(self, x: Tensor) -> Tensor:
        """Mean of ``m`` charged queries of the wrapped model. ``(N, C, H, W)`` -> ``(N, K)``."""
        validate_images(x, self.input_shape)
        return self.backend.forward(x).to(x.device)

    __call__ = query

    def audit(self, x: Tensor) -> Tensor:
        """One pass of the wrapped model's :meth:`BlackBox.audit` (verification on the real randomized
        model; free locally, charged by a remote API)."""
        return self.inner.audit(x)

    def describe(self) -> dict[str, object]:
        d = self.inner.describe()
        d.update(name=self.name, eot_samples=self.m)
        return d


__all__ = ["EOTBlackBox"]
