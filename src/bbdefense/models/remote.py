"""Remote black boxes: :class:`HttpBlackBox` for a ``bbdefense serve`` API and
:func:`json_api_blackbox` for a user's own JSON API.

Both are ordinary :class:`~bbdefense.models.BlackBox` objects (the backend is HTTP), so attacks,
certification and distillation run against them unchanged, with the same validation, budget and
query counting: one image = one query, counted locally exactly as the server charges it.

Error mapping (after retries): 429 ``budget_exceeded`` -> :class:`~bbdefense.errors.QueryBudgetExceeded`;
403 ``attack_suspected`` (a stateful
detector refused the query or banned the key) -> :class:`~bbdefense.errors.QueryRejected`; 401 ->
:class:`~bbdefense.errors.AccessError`; 413/422 -> :class:`~bbdefense.errors.InputError`;
anything else -> :class:`~bbdefense.errors.RemoteError`.

Retries (exponential backoff, ``backoff * 2**attempt`` capped at ``max_backoff``, or the server's
``Retry-After``): connection failures before the request was sent, 502/503/504 and 429
``rate_limited``. A predict request that may have reached the model (a read timeout, a dropped
connection) is **not** retried: the server may have charged it, and a silent retry would charge it
twice; it raises :class:`~bbdefense.errors.RemoteError` instead (``GET`` requests are retried).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import AccessError, InputError, QueryBudgetExceeded, QueryRejected, RemoteError
from ..utils import require_extra
from .blackbox import BlackBox, OutputMode
from .wire import decode_tensor, encode_tensor

RETRY_STATUS = (502, 503, 504)


class HttpTransport:
    """An ``httpx.Client`` with retries, backoff and typed errors (shared by both backends).

    Args:
        client: an ``httpx.Client`` to use (e.g. FastAPI's ``TestClient(app)``); default a new one
            with ``timeout`` seconds.
        headers: sent with every request (API key...).
        retries: retries after the first attempt for transient failures.
        backoff, max_backoff: seconds; the wait before retry ``i`` is ``min(backoff * 2**i, max_backoff)``.
        sleep: the sleep function (tests pass a fake).
    """

    def __init__(self, *, client: Any = None, headers: dict[str, str] | None = None, timeout: float = 30.0,
                 retries: int = 3, backoff: float = 0.25, max_backoff: float = 8.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        httpx = require_extra("httpx", "serve", "a remote (HTTP) black box")

        if retries < 0 or backoff < 0 or timeout <= 0:
            raise InputError(f"need retries >= 0, backoff >= 0, timeout > 0; got {retries}, {backoff}, {timeout}")
        self.client = client if client is not None else httpx.Client(timeout=timeout)
        self.headers = dict(headers or {})
        self.timeout, self.retries, self.backoff, self.max_backoff = timeout, retries, backoff, max_backoff
        self.sleep = sleep
        self.retried = 0

    def _wait(self, attempt: int, retry_after: str | None = None) -> None:
        wait = min(self.backoff * 2**attempt, self.max_backoff)
        if retry_after is not None:
            with contextlib.suppress(ValueError):  # an HTTP-date Retry-After keeps the exponential wait
                wait = max(wait, min(float(retry_after), self.max_backoff))
        self.retried += 1
        self.sleep(wait)

    def request(self, method: str, url: str, *, json: Any = None, idempotent: bool = False) -> Any:
        """Send with retries; returns the final ``httpx.Response`` (any status not retried)."""
        import httpx

        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                r = self.client.request(method, url, json=json, headers=self.headers)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                if last:
                    raise RemoteError(f"{method} {url}: cannot connect after {attempt + 1} attempt(s): {exc}") from exc
                self._wait(attempt)
                continue
            except httpx.TimeoutException as exc:
                if idempotent and not last:
                    self._wait(attempt)
                    continue
                raise RemoteError(f"{method} {url} timed out ({exc!r}); not retried, the server may have "
                                  "charged the batch") from exc
            except httpx.TransportError as exc:
                if idempotent and not last:
                    self._wait(attempt)
                    continue
                raise RemoteError(f"{method} {url} failed: {exc!r}") from exc
            transient = r.status_code in RETRY_STATUS or (r.status_code == 429 and _code(r) == "rate_limited")
            if transient and not last:
                self._wait(attempt, r.headers.get("retry-after"))
                continue
            return r
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self.client.close()


def _code(r: Any) -> str:
    try:
        body = r.json()
    except ValueError:
        return ""
    return str(body.get("code", "")) if isinstance(body, dict) else ""


def _detail(r: Any) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:300]
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(body)[:300]


def raise_for_status(r: Any, url: str) -> None:
    """Map an error response of a bbdefense server to a typed error."""
    if r.status_code < 400:
        return
    code, detail = _code(r), _detail(r)
    if r.status_code == 429 and code == "budget_exceeded":
        raise QueryBudgetExceeded(f"remote budget exceeded: {detail}")
    if r.status_code == 403 and code == "attack_suspected":
        raise QueryRejected(f"{url} refused the query ({code}): {detail}", banned="banned" in detail)
    if r.status_code in (401, 403):
        raise AccessError(f"{url} refused the API key ({r.status_code} {code}): {detail}")
    if r.status_code in (413, 422):
        hint = (" (the API takes images in [0, 1] only: clip noisy inputs, e.g. Smooth(..., clip=True))"
                if code == "invalid_images" and "[0, 1]" in detail else "")
        raise InputError(f"{url} rejected the request ({r.status_code} {code}): {detail}{hint}")
    raise RemoteError(f"{url} answered {r.status_code} {code}: {detail}")


class HttpBackend:
    """Backend for a ``bbdefense serve`` API: ``POST /v1/predict`` with base64 tensors.

    ``returns``/``randomized`` and the limits come from ``GET /v1/info``. ``encoding``: ``"float32"``
    (exact, default), ``"uint8"`` (images must be on the 8-bit grid) or ``"auto"`` (uint8 for batches
    on the grid, float32 otherwise).
    """

    def __init__(self, url: str, api_key: str | None = None, *, client: Any = None, timeout: float = 30.0,
                 retries: int = 3, backoff: float = 0.25, encoding: str = "float32",
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if encoding not in ("float32", "uint8", "auto"):
            raise InputError(f"encoding must be 'float32', 'uint8' or 'auto', got {encoding!r}")
        self.url = url.rstrip("/")
        headers = {"X-API-Key": api_key} if api_key else {}
        self.transport = HttpTransport(client=client, headers=headers, timeout=timeout, retries=retries,
                                       backoff=backoff, sleep=sleep)
        self.encoding = encoding
        self.info = self._get("/v1/info")
        for k in ("output", "num_classes", "input_shape", "limits"):
            if k not in self.info:
                raise RemoteError(f"{self.url}/v1/info lacks {k!r}; is this a bbdefense server?")
        self.returns: OutputMode = self.info["output"]
        self.remote = True  # the server bills every image, audits included
        self.randomized = bool(self.info.get("randomized", False))
        self.device = torch.device("cpu")
        self.max_batch = int(self.info["limits"]["max_batch"])
        per_image = int(np.prod(self.info["input_shape"])) * (1 if encoding == "uint8" else 4)
        # base64 is 4/3 of the raw bytes; keep a margin for the JSON around it
        body_cap = int(self.info["limits"].get("max_body_bytes", 1 << 30)) * 3 // 4 - 1024
        self.max_batch = max(1, min(self.max_batch, body_cap // max(per_image, 1)))

    def _get(self, path: str) -> dict[str, Any]:
        r = self.transport.request("GET", self.url + path, idempotent=True)
        raise_for_status(r, self.url + path)
        try:
            return dict(r.json())
        except ValueError as exc:
            raise RemoteError(f"{self.url}{path} did not answer JSON: {r.text[:200]!r}") from exc

    def usage(self) -> dict[str, Any]:
        """The server's view of this key: ``{"key", "used", "budget", "remaining", ...}``."""
        return self._get("/v1/usage")

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] > self.max_batch:  # the black box sends max_batch chunks; this guards direct use
            return torch.cat([self.forward(x[i:i + self.max_batch]) for i in range(0, x.shape[0], self.max_batch)])
        url = self.url + "/v1/predict"
        enc = self.encoding
        if enc == "auto":  # uint8 (4x smaller) when the batch is exactly on the 8-bit grid, else float32
            q = x.detach().double() * 255
            enc = "uint8" if bool(((q - q.round()).abs() <= 1e-3).all()) else "float32"
        r = self.transport.request("POST", url, json={"inputs": encode_tensor(x, enc)})
        raise_for_status(r, url)
        try:
            body = r.json()
            out = decode_tensor(body["outputs"])
        except (ValueError, KeyError, TypeError, InputError) as exc:
            raise RemoteError(f"{url} answered an unreadable body: {exc}") from exc
        n = x.shape[0]
        ok = (out.dim() == 1 and self.returns == "label") or (out.dim() == 2 and self.returns != "label")
        if not ok or out.shape[0] != n:
            raise RemoteError(f"{url} answered outputs of shape {tuple(out.shape)} for {n} images")
        return out


class RemoteBlackBox(BlackBox):
    """A plain :class:`BlackBox` on a remote backend: it counts, validates and limits exactly as
    any black box (in ``BlackBox._forward``; this class overrides no query path).

    The backend's per-request batch limit (``backend.max_batch``) is honoured by the black box:
    a larger batch is sent as several requests, **each counted as its own query call**, so that
    when the remote budget runs out mid-batch the local counters still equal the remote charges
    (the chunks already answered are counted, the refused one is not).

    A remote API bills every image it receives, whatever the caller calls it: :meth:`audit`
    queries (an evaluator's verification) are **charged** here (``remote`` is True whatever the
    backend declares, so ``audit_charged``): against ``audit_budget`` when one is declared, else
    against ``budget`` together with the queries, and ``stats.charged`` is what the server billed.
    What this class adds is the server-side plan check (:meth:`check_remaining`).
    """

    def __init__(self, backend: Any, **kw: Any) -> None:
        kw.setdefault("remote", True)
        super().__init__(backend, **kw)

    def check_plan(self, queries: int, audits: int = 0, *, what: str = "this run") -> None:
        """:meth:`BlackBox.check_plan`, then (when the backend can tell) the key's remaining budget on
        the server: a plan charging more than that is refused before any query is sent."""
        super().check_plan(queries, audits, what=what)
        self.check_remaining(int(queries) + int(audits), what=what)

    def check_remaining(self, need: int, *, what: str = "this run") -> None:
        """Refuse (:class:`QueryBudgetExceeded`) a plan charging ``need`` images when the server says
        the key has fewer left (``GET /v1/usage``, not charged); a backend without usage is trusted."""
        usage = getattr(self.backend, "usage", None)
        if usage is None:
            return
        u = usage()
        left = u.get("remaining")
        if left is not None and int(need) > int(left):
            raise QueryBudgetExceeded(
                f"{what} would be charged {need} images but key {u.get('key')!r} has {left} of {u.get('budget')} "
                f"left on {getattr(self.backend, 'url', self.name)}; nothing was sent")


class HttpBlackBox(RemoteBlackBox):
    """A :class:`BlackBox` whose backend is a ``bbdefense serve`` HTTP API.

    Shape, classes and output mode come from ``GET /v1/info``. Batches larger than the server's
    limit are split into several requests, each counted as its own query call, so the local
    counters match the server's charges request by request.

    Args:
        url: the server, e.g. ``"http://127.0.0.1:8000"``.
        api_key: sent as ``X-API-Key``.
        client: an ``httpx.Client`` (FastAPI's ``TestClient(app)`` in tests; then ``url`` is
            ``"http://testserver"``).
        output: what to reveal locally: None (the server's mode) or a coarser one (``"label"`` from a
            ``"probs"`` server); asking for more than the server reveals raises AccessError.
        top_k: with ``output="probs"``, reveal only the k largest locally (on top of the server's).
        budget: an extra local budget (the server enforces its own per key); audit queries count
            against it unless ``audit_budget`` is given.
        audit_budget: a separate local limit on audit (evaluation) images, which the server charges.
        timeout, retries, backoff, encoding: see :class:`HttpBackend`.

    Shape: ``(N, C, H, W)`` float32 in [0, 1] -> ``(N, K)`` scores or ``(N,)`` labels.
    """

    def __init__(self, url: str, api_key: str | None = None, *, client: Any = None, output: OutputMode | None = None,
                 top_k: int | None = None, budget: int | None = None, timeout: float = 30.0, retries: int = 3,
                 backoff: float = 0.25, encoding: str = "float32", log_queries: bool = False, name: str | None = None,
                 audit_budget: int | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        backend = HttpBackend(url, api_key, client=client, timeout=timeout, retries=retries, backoff=backoff,
                              encoding=encoding, sleep=sleep)
        info = backend.info
        super().__init__(backend, num_classes=int(info["num_classes"]),
                         input_shape=tuple(int(s) for s in info["input_shape"]),
                         output=output or backend.returns, top_k=top_k, budget=budget, log_queries=log_queries,
                         name=name or str(info.get("name") or url), audit_budget=audit_budget)
        if self.top_k is None and self.output == "probs":
            self.top_k = info.get("top_k")  # what the server already applies

    @property
    def http_backend(self) -> HttpBackend:
        """:attr:`backend` as the :class:`HttpBackend` it is (an AccessError for a :meth:`with_backend` view
        through some other backend, which has no server to ask)."""
        backend = self.backend
        if not isinstance(backend, HttpBackend):
            raise AccessError(f"{self.name}: backend {type(backend).__name__} is not a bbdefense HTTP API")
        return backend

    @property
    def remote_info(self) -> dict[str, Any]:
        return dict(self.http_backend.info)

    def usage(self) -> dict[str, Any]:
        """The server's budget view of this key (not a query)."""
        return self.http_backend.usage()

    def describe(self) -> dict[str, object]:
        d = super().describe()
        d.update(url=self.http_backend.url, defense=self.remote_info.get("defense"))
        return d


class JsonApiBackend:
    """Backend for a user's own JSON API: ``request_fn(x) -> JSON body``, ``response_fn(JSON) -> outputs``.

    Args:
        url: the endpoint receiving ``POST`` requests.
        request_fn: builds the JSON body for a batch ``(N, C, H, W)``.
        response_fn: turns the JSON answer into ``(N, K)`` scores or ``(N,)`` labels (tensor,
            array or nested lists).
        returns: what ``response_fn`` gives: ``"logits"``, ``"probs"`` or ``"label"``.
        headers: e.g. ``{"Authorization": "Bearer ..."}``.
        budget_status: HTTP status meaning "budget spent" -> QueryBudgetExceeded (None: none).
        max_batch: split larger batches into several requests.
    """

    def __init__(self, url: str, request_fn: Callable[[Tensor], Any], response_fn: Callable[[Any], Any], *,
                 returns: OutputMode = "probs", headers: dict[str, str] | None = None, client: Any = None,
                 timeout: float = 30.0, retries: int = 3, backoff: float = 0.25, randomized: bool = False,
                 budget_status: int | None = 402, max_batch: int = 64,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if max_batch < 1:
            raise InputError(f"max_batch must be >= 1, got {max_batch}")
        self.url, self.request_fn, self.response_fn = url, request_fn, response_fn
        self.returns, self.randomized, self.device = returns, randomized, torch.device("cpu")
        self.remote = True
        self.budget_status, self.max_batch = budget_status, max_batch
        self.transport = HttpTransport(client=client, headers=headers, timeout=timeout, retries=retries,
                                       backoff=backoff, sleep=sleep)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] > self.max_batch:
            return torch.cat([self.forward(x[i:i + self.max_batch]) for i in range(0, x.shape[0], self.max_batch)])
        r = self.transport.request("POST", self.url, json=self.request_fn(x))
        if self.budget_status is not None and r.status_code == self.budget_status:
            raise QueryBudgetExceeded(f"{self.url} answered {r.status_code}: {_detail(r)}")
        if r.status_code >= 400:
            raise RemoteError(f"{self.url} answered {r.status_code}: {_detail(r)}")
        try:
            out = self.response_fn(r.json())
            t = out if isinstance(out, Tensor) else torch.as_tensor(np.asarray(out))
        except Exception as exc:  # a user's parser can fail in any way
            raise RemoteError(f"cannot read the answer of {self.url}: {type(exc).__name__}: {exc}") from exc
        want = 1 if self.returns == "label" else 2
        if t.dim() != want or t.shape[0] != x.shape[0]:
            raise RemoteError(f"response_fn gave shape {tuple(t.shape)} for {x.shape[0]} images "
                              f"(expected {'(N,)' if want == 1 else '(N, K)'})")
        return t.long() if self.returns == "label" else t.float()


def json_api_blackbox(url: str, request_fn: Callable[[Tensor], Any], response_fn: Callable[[Any], Any], *,
                      num_classes: int, input_shape: tuple[int, int, int], returns: OutputMode = "probs",
                      output: OutputMode | None = None, budget: int | None = None,
                      audit_budget: int | None = None, **backend_kw: Any) -> RemoteBlackBox:
    """A query-counted :class:`BlackBox` on a user's own JSON API (see :class:`JsonApiBackend`);
    its audit queries are charged like any other request."""
    backend = JsonApiBackend(url, request_fn, response_fn, returns=returns, **backend_kw)
    return RemoteBlackBox(backend, num_classes=num_classes, input_shape=input_shape, output=output or returns,
                          budget=budget, audit_budget=audit_budget, name=url)


__all__ = ["HttpBackend", "HttpBlackBox", "HttpTransport", "JsonApiBackend", "RemoteBlackBox", "json_api_blackbox",
           "raise_for_status"]
