"""The query oracle: :class:`BlackBox`, the single choke point through which every query passes.

A black box wraps a *backend* (a local torch module, a TorchScript or ONNX file, any Python
callable, an HTTP API) and

* validates every input batch (``(N, C, H, W)`` float32 in [0, 1], finite, the declared shape),
* enforces an optional hard budget, raising :class:`QueryBudgetExceeded` **before** any work,
* counts one query per image forwarded, in exactly one method (:meth:`BlackBox.query`),
* reveals only what it declares: ``logits``, ``probs`` (optionally only the top-k) or ``label``,
* returns results on the caller's device.

White-box access is a separate, explicit type (:class:`WhiteBox`), used by owner-side defenses,
white-box baselines and adaptive attacks.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Literal, Self, overload

import torch
from torch import Tensor, nn

from ..errors import AccessError, InputError, QueryBudgetExceeded
from .backends import OUTPUT_MODES, Backend, CallableBackend, OutputMode, TorchBackend
from .stats import QueryLogEntry, QueryStats, _Meter
from .validation import validate_images


class _Limit:
    """A hard limit of a :class:`BlackBox`, kept on its meter so that every view of the oracle reads and sets
    the same one (``budget``, ``audit_budget``): ``None`` for no limit, else an int >= 0 (InputError)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> _Limit: ...

    @overload
    def __get__(self, obj: BlackBox, objtype: type | None = None) -> int | None: ...

    def __get__(self, obj: BlackBox | None, objtype: type | None = None) -> _Limit | int | None:
        return self if obj is None else getattr(obj._meter, self.name)

    def __set__(self, obj: BlackBox, value: int | None) -> None:
        if value is not None and value < 0:
            raise InputError(f"{self.name} must be >= 0 or None, got {value}")
        setattr(obj._meter, self.name, value)


class BlackBox:
    """A query-counted oracle around a backend.

    Args:
        backend: what to forward to (see :class:`Backend`); use the constructors
            :meth:`from_module`, :meth:`from_callable`, or :func:`bbdefense.models.load_blackbox`.
        num_classes: number of classes K.
        input_shape: ``(C, H, W)`` of one image.
        output: what the oracle reveals: ``"logits"``, ``"probs"`` or ``"label"`` (top-1 only).
        top_k: with ``output="probs"``, reveal only the k largest probabilities (others are 0).
        budget: hard limit on the number of images queried; ``None`` for no limit.
        log_queries: keep a :class:`QueryLogEntry` per call in :attr:`log`.
        name: a label for records.
        audit_budget: hard limit on the number of images sent through :meth:`audit` (an
            evaluation budget); ``None`` for none. Where audits are charged (:attr:`audit_charged`,
            a remote API) and no audit budget is declared, audits count against ``budget``.
        remote: the backend bills every image it is sent, audits included (default: the
            backend's ``remote`` declaration, else False).
        share_counters_with: another black box whose counters and budgets this one uses (a view
            of the same oracle through another backend, e.g. EOT); ``budget``/``audit_budget``
            must then be None.

    Shape:
        - input: ``(N, C, H, W)`` float32 in [0, 1].
        - output: ``(N, K)`` float32 for logits/probs, ``(N,)`` int64 for labels; on the input's device.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        num_classes: int,
        input_shape: tuple[int, int, int],
        output: OutputMode = "logits",
        top_k: int | None = None,
        budget: int | None = None,
        log_queries: bool = False,
        name: str = "blackbox",
        audit_budget: int | None = None,
        remote: bool | None = None,
        share_counters_with: BlackBox | None = None,
    ) -> None:
        if output not in OUTPUT_MODES:
            raise InputError(f"unknown output mode {output!r}; choose one of: {', '.join(OUTPUT_MODES)}")
        native = backend.returns
        if output == "logits" and native != "logits":
            raise AccessError(f"backend returns {native}; it cannot reveal logits")
        if output == "probs" and native == "label":
            raise AccessError("backend returns labels only; it cannot reveal probabilities")
        if top_k is not None:
            if output != "probs":
                raise InputError(f"top_k needs output='probs', got output={output!r}")
            if not 1 <= top_k <= num_classes:
                raise InputError(f"top_k must be in [1, {num_classes}], got {top_k}")
        if budget is not None and budget < 0:
            raise InputError(f"budget must be >= 0 or None, got {budget}")
        if audit_budget is not None and audit_budget < 0:
            raise InputError(f"audit_budget must be >= 0 or None, got {audit_budget}")
        if num_classes < 2:
            raise InputError(f"num_classes must be >= 2, got {num_classes}")
        self.backend = backend
        self.num_classes = int(num_classes)
        if len(input_shape) != 3:
            raise InputError(f"input_shape must be (C, H, W), got {tuple(input_shape)}")
        c, h, w = input_shape
        self.input_shape: tuple[int, int, int] = (int(c), int(h), int(w))
        self.output: OutputMode = output
        self.top_k = top_k
        self.name = name
        self.log_queries = log_queries
        self._remote = bool(getattr(backend, "remote", False)) if remote is None else bool(remote)
        self._meter: _Meter
        if share_counters_with is not None:
            if budget is not None or audit_budget is not None:
                raise InputError("a black box sharing another's counters uses that one's budgets; got budget="
                                 f"{budget}, audit_budget={audit_budget}")
            self._meter = share_counters_with._meter
        else:
            self._meter = _Meter(budget=budget, audit_budget=audit_budget)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_module(cls, module: nn.Module, *, num_classes: int | None = None,
                    input_shape: tuple[int, int, int], **kw: object) -> BlackBox:
        """Wrap a local torch module that maps ``(N, C, H, W)`` in [0, 1] to logits."""
        backend = TorchBackend(module)
        if num_classes is None:
            num_classes = backend.infer_num_classes(input_shape)
        # **kw are BlackBox's keyword options (output, budget, ...), passed through untyped; __init__ checks them
        return cls(backend, num_classes=num_classes, input_shape=input_shape, **kw)  # type: ignore[arg-type]

    @classmethod
    def from_callable(cls, fn: object, *, returns: OutputMode = "logits", num_classes: int,
                      input_shape: tuple[int, int, int], randomized: bool = False, **kw: object) -> BlackBox:
        """Wrap any Python callable ``fn(x: Tensor) -> Tensor`` returning ``returns``; the black box's
        ``output`` defaults to what the callable returns (pass ``output=`` to expose less)."""
        kw.setdefault("output", returns)
        backend = CallableBackend(fn, returns=returns, randomized=randomized)  # type: ignore[arg-type]  # fn: any callable
        # **kw: BlackBox's keyword options, passed through untyped (as in from_module)
        return cls(backend, num_classes=num_classes, input_shape=input_shape, **kw)  # type: ignore[arg-type]

    @classmethod
    def from_art(cls, estimator: object, *, returns: OutputMode = "logits", batch_size: int = 128,
                 **kw: Any) -> BlackBox:
        """An IBM ART classifier (``predict``, ``nb_classes``, ``input_shape``, ``clip_values``) as a
        query-counted black box; ``returns``: what its ``predict`` gives (see :mod:`bbdefense.models.interop`)."""
        from .interop import art_callable

        fn, k, shape = art_callable(estimator, returns=returns, batch_size=batch_size)
        kw.setdefault("name", "art")
        return cls.from_callable(fn, returns=returns, num_classes=k, input_shape=shape, **kw)

    # ------------------------------------------------------------------ properties
    @property
    def randomized(self) -> bool:
        """True if the same input can give different outputs (a randomized defense)."""
        return bool(self.backend.randomized)

    @property
    def remote(self) -> bool:
        """True where the backend is a remote API that bills every image it receives (see
        :class:`~bbdefense.models.remote.RemoteBlackBox`); then :meth:`audit` queries are charged."""
        return self._remote

    budget = _Limit()
    """Hard limit on charged queries (shared by every view of this oracle)."""
    audit_budget = _Limit()
    """Hard limit on audit images (shared by every view of this oracle)."""

    @property
    def log(self) -> list[QueryLogEntry]:
        """Logged calls (with ``log_queries=True``)."""
        return self._meter.log

    @property
    def query_cost(self) -> int:
        """Images charged per image of a :meth:`query` (the backend's ``cost``; 1 but for EOT's ``m``)."""
        return int(getattr(self.backend, "cost", 1))

    def with_backend(self, backend: Backend) -> Self:
        """A view of this oracle through another ``backend`` (same class, shape, output, budgets and
        **counters**: a query through the view is charged here). The caller's object is unchanged;
        BPDA attacks through such a view."""
        view = copy.copy(self)
        view.backend = backend
        return view

    @property
    def audit_charged(self) -> bool:
        """True if :meth:`audit` queries cost budget (a remote API charges every image it is sent)."""
        return self.remote

    def audit_allowance(self, n: int) -> int:
        """How many of ``n`` audit images may be sent now: ``n`` where audits are free and unlimited,
        else ``min(n, stats.audit_remaining)``. Optional evaluations measure the target on that many."""
        left = self.stats.audit_remaining
        return int(n) if left is None else min(int(n), left)

    def check_plan(self, queries: int, audits: int = 0, *, what: str = "this run") -> None:
        """Refuse, before any query, a plan of ``queries`` queries and ``audits`` audit images that
        the budgets cannot cover (remote black boxes also ask the server for the key's remaining
        budget). Raises :class:`QueryBudgetExceeded` naming the plan and what is left."""
        st = self.stats
        left = st.audit_remaining
        if st.audit_budget is not None and left is not None and audits > left:
            raise QueryBudgetExceeded(f"{what} needs {audits} evaluation (audit) queries but the evaluation "
                                      f"budget has {left} of {st.audit_budget} left")
        shared = audits if self.audit_charged and st.audit_budget is None else 0
        if st.remaining is not None and queries + shared > st.remaining:
            detail = f" ({queries} + {shared} evaluation)" if shared else ""
            raise QueryBudgetExceeded(f"{what} needs {queries + shared} queries{detail} but the budget has "
                                      f"{st.remaining} of {self.budget} left")

    @property
    def reveals_scores(self) -> bool:
        return self.output in ("logits", "probs")

    @property
    def stats(self) -> QueryStats:
        m = self._meter
        return QueryStats(m.queries, m.calls, m.audit, m.budget, m.seconds, self.audit_charged, m.audit_budget)

    def reset_stats(self) -> None:
        """Zero every counter (the budget is charged afresh) and clear the log."""
        m = self._meter
        m.queries = m.calls = m.audit = 0
        m.seconds = 0.0
        m.log.clear()

    def add_worker_queries(self, queries: int, *, calls: int = 0, seconds: float = 0.0) -> None:
        """Add to this oracle's counters the ``queries`` (in ``calls`` batches, ``seconds`` of forward time)
        that a copy of it answered in another process: a Ray worker certifying a shard
        (:func:`bbdefense.evaluation.distributed.certify_rows_ray`). Each was counted there by the copy's
        :meth:`_forward`; this is how they reach the driver's counters and budget. The work is planned
        against the budget before it is shipped (:meth:`check_plan`), so nothing is refused here."""
        if queries < 0 or calls < 0 or seconds < 0:
            raise InputError(f"worker counters must be >= 0, got queries={queries}, calls={calls}, "
                             f"seconds={seconds}")
        m = self._meter
        m.queries += int(queries)
        m.calls += int(calls)
        m.seconds += float(seconds)

    def describe(self) -> dict[str, object]:
        """Metadata for records and ``GET /v1/info`` (``backend_info``: what a ``backend="auto"`` black box ran,
        :mod:`bbdefense.models.onnx_auto`)."""
        info = getattr(self.backend, "backend_info", None)
        return {
            **({"backend_info": dict(info)} if isinstance(info, dict) else {}),
            "name": self.name,
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "output": self.output,
            "top_k": self.top_k,
            "budget": self.budget,
            "audit_charged": self.audit_charged,
            "randomized": self.randomized,
            "backend": type(self.backend).__name__,
            "bounds": [0.0, 1.0],
        }

    # ------------------------------------------------------------------ the choke point
    def query(self, x: Tensor, *, bounded: bool = True) -> Tensor:
        """Forward a batch and charge one query per image. The only counting method.

        ``bounded=False`` accepts finite values outside [0, 1] (randomized smoothing's unclipped noisy
        inputs, :class:`bbdefense.certify.Smooth`); a remote API may still refuse them.

        Raises:
            InputError: ``x`` is not an ``(N, C, H, W)`` float32 batch in [0, 1] of the declared shape.
            QueryBudgetExceeded: the batch would take the total over the budget (nothing is forwarded).
        """
        return self._forward(x, kind="query", bounded=bounded)

    __call__ = query

    def audit(self, x: Tensor) -> Tensor:
        """Forward a batch for *verification* by an evaluator (e.g. re-checking an attack's success).

        Counted in ``stats.audit_queries``, not in ``stats.queries``. On a local model it is free
        (not charged to ``budget``). Where the backend bills every image (:attr:`audit_charged`, a
        remote API) it is charged: against ``audit_budget`` when declared, else against ``budget``;
        either limit refuses the batch (:class:`QueryBudgetExceeded`) before anything is sent.
        """
        return self._forward(x, kind="audit")

    def predict_label(self, x: Tensor, *, bounded: bool = True) -> Tensor:
        """Top-1 labels ``(N,)`` through :meth:`query` (charged)."""
        out = self.query(x, bounded=bounded)
        return out if self.output == "label" else out.argmax(dim=1)

    def _check_budget(self, kind: Literal["query", "audit"], n: int) -> None:
        """Raise :class:`QueryBudgetExceeded` if ``n`` more charged images of ``kind`` would pass a limit."""
        m = self._meter
        # charged audits without their own budget share the query budget (a remote API bills both)
        shared = self.audit_charged and m.audit_budget is None
        used = m.queries + (m.audit if shared else 0)
        if (kind == "query" or shared) and m.budget is not None and used + n > m.budget:
            extra = " audit images (a remote API charges audit queries too)" if kind == "audit" else ""
            raise QueryBudgetExceeded(
                f"query budget exceeded: {used} of {m.budget} used, a batch of {n}{extra} was refused")
        if kind == "audit" and m.audit_budget is not None and m.audit + n > m.audit_budget:
            raise QueryBudgetExceeded(
                f"evaluation (audit) budget exceeded: {m.audit} of {m.audit_budget} used, a batch of {n} "
                f"was refused{' (a remote API charges audit queries)' if self.audit_charged else ''}")

    def _forward(self, x: Tensor, *, kind: Literal["query", "audit"], differentiable: bool = False,
                 bounded: bool = True) -> Tensor:
        """Validate, check the budget, forward, count: **the** counting point (every query of every
        view and subclass passes here, nowhere else increments a counter).

        A query of ``N`` images is charged ``N * query_cost``; an audit ``N`` (on the backend's
        ``audit_backend`` when it declares one). A backend with ``max_batch`` gets larger batches in
        chunks, each counted when answered (a remote budget running out mid-batch leaves the local
        counters equal to the remote charges); a batch over a local limit sends no chunk at all.
        """
        validate_images(x, self.input_shape, bounded=bounded)
        backend = self.backend if kind == "query" else getattr(self.backend, "audit_backend", self.backend)
        cost = self.query_cost if kind == "query" else 1
        n = int(x.shape[0])
        self._check_budget(kind, n * cost)
        step = int(getattr(backend, "max_batch", 0) or 0)
        if step and n == 0:  # no request for an empty batch
            shape = (0,) if self.output == "label" else (0, self.num_classes)
            return torch.zeros(shape, dtype=torch.int64 if self.output == "label" else torch.float32, device=x.device)
        if step and n > step:
            return torch.cat([self._forward_chunk(backend, x[i:i + step], kind, cost, differentiable)
                              for i in range(0, n, step)])
        return self._forward_chunk(backend, x, kind, cost, differentiable)

    def _forward_chunk(self, backend: Backend, x: Tensor, kind: Literal["query", "audit"], cost: int,
                       differentiable: bool) -> Tensor:
        n = int(x.shape[0]) * cost
        self._check_budget(kind, n)
        m = self._meter
        t0 = time.perf_counter()
        if differentiable:
            # differentiable calls come from WhiteBox only, whose backend is a TorchBackend (it has forward_grad)
            out = backend.forward_grad(x.to(backend.device))  # type: ignore[attr-defined]
        else:
            out = self.reveal(backend.forward(x.detach().to(backend.device)), backend.returns)
        m.seconds += time.perf_counter() - t0
        m.calls += 1
        if kind == "query":
            m.queries += n
        else:
            m.audit += n
        if self.log_queries:
            m.log.append(QueryLogEntry(m.calls, n, kind, time.time()))
        return out.to(x.device)

    def reveal(self, raw: Tensor, native: OutputMode | None = None) -> Tensor:
        """What this oracle reveals of a raw backend output ``raw`` (natively ``native``, default the
        backend's ``returns``): top-1 labels, logits, or (top-k) probabilities. Computes only."""
        native = self.backend.returns if native is None else native
        if self.output == "label":
            return raw.long() if native == "label" else raw.argmax(dim=1)
        if self.output == "logits":
            return raw.float()
        probs = raw.float() if native == "probs" else torch.softmax(raw.float(), dim=1)
        if self.top_k is not None and self.top_k < self.num_classes:
            vals, idx = probs.topk(self.top_k, dim=1)
            probs = torch.zeros_like(probs).scatter_(1, idx, vals)
        return probs

    def __repr__(self) -> str:
        return (f"BlackBox(name={self.name!r}, backend={type(self.backend).__name__}, output={self.output!r}, "
                f"num_classes={self.num_classes}, input_shape={self.input_shape}, budget={self.budget})")


class WhiteBox(BlackBox):
    """Explicit white-box access to a torch module: everything a :class:`BlackBox` does, plus
    differentiable :meth:`logits` and the :attr:`module` itself.

    Queries through :meth:`logits` are validated and counted like any other query (gradient
    attacks report forward passes as queries).

    Shape:
        - :meth:`logits`: ``(N, C, H, W)`` -> ``(N, K)``, differentiable w.r.t. the input.
    """

    def __init__(self, module: nn.Module, *, num_classes: int | None = None,
                 input_shape: tuple[int, int, int], budget: int | None = None, name: str = "whitebox",
                 log_queries: bool = False) -> None:
        backend = TorchBackend(module)
        if num_classes is None:
            num_classes = backend.infer_num_classes(input_shape)
        super().__init__(backend, num_classes=num_classes, input_shape=input_shape, output="logits",
                         budget=budget, name=name, log_queries=log_queries)

    @property
    def module(self) -> nn.Module:
        """The torch module behind :attr:`backend` (read through ``backend``, so a :meth:`with_backend` view
        answers with its own backend's module)."""
        module = getattr(self.backend, "module", None)
        if not isinstance(module, nn.Module):
            raise AccessError(f"{self.name}: backend {type(self.backend).__name__} exposes no torch module")
        return module

    def logits(self, x: Tensor) -> Tensor:
        """Differentiable logits, charged one query per image."""
        return self._forward(x, kind="query", differentiable=True)


__all__ = ["OUTPUT_MODES", "Backend", "BlackBox", "OutputMode", "QueryLogEntry", "QueryStats", "WhiteBox"]
