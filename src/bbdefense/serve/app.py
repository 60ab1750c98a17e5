"""A (defended) model as a real black-box HTTP API: :func:`create_app` (FastAPI).

Endpoints (OpenAPI schema at ``/openapi.json``, docs at ``/docs``):

* ``GET /healthz`` -> ``{"status": "ok"}`` (no key needed).
* ``GET /v1/info`` -> classes, input shape, output mode, top-k, bounds, randomized, defense, version
  and the request limits (no key needed: it is what any API documentation would say).
* ``GET /v1/usage`` -> the caller's key name, images used, budget and remaining.
* ``POST /v1/predict`` with ``{"inputs": <wire tensor | nested lists>}`` (see :mod:`.wire`) ->
  ``{"outputs": ..., "output", "images", "used", "budget", "remaining", "audit_seq"}``; outputs come
  back in the encoding of the inputs unless ``"response_encoding"`` says otherwise.

A request is checked in this order, each failure a JSON ``{"detail": <message>, "code": <code>}``:
key (401 ``missing_key`` / ``unknown_key``), rate (429 ``rate_limited``, with ``Retry-After``), body
size (413 ``too_large``), JSON and schema (422 ``malformed``), batch size (413 ``batch_too_large``),
images (422 ``invalid_images``: shape, dtype, NaN/inf, range), the stateful detector when one runs
(403 ``attack_suspected``, see below), budget (429 ``budget_exceeded``).
Only then is the batch **charged** (one image = one query; one durable SQLite transaction that also
appends the audit row, see :mod:`.store`), forwarded through the :class:`~bbdefense.models.BlackBox`
and answered. Should the model itself fail, the charge is refunded and the answer is a 500.

Stateful detection (``detector=``, a :class:`~bbdefense.defenses.stateful.StatefulDetector`, e.g.
Blacklight): every validated batch is observed under the key's name before it is charged. When an image
is flagged, ``on_detect`` decides: ``"reject"`` refuses the request (403 ``attack_suspected``),
``"ban"`` refuses it and bans the key for good (every later request: 403 ``attack_suspected``; the ban
is a row of the state file, so it survives restarts), ``"log"`` answers it and records the detection.
A refused request is audited (outcome ``attack_suspected``) and charged when ``charge_rejected``
(default: a probe is a query). The detector keeps its own state in the same SQLite file.

The served object is any :class:`~bbdefense.models.BlackBox`, so owner-side defenses
(``BlackBox.from_module(DEFENSES[name](module, ...))``) and smoothed classifiers serve the same way.
"""

import math
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..defenses.stateful import StatefulDetector
from ..errors import InputError
from ..models.blackbox import BlackBox
from ..models.validation import validate_images
from ..models.wire import batch_digest, decode_any, encode_tensor
from ..utils import require_extra
from .store import KeyRecord, KeySpec, KeyStore, load_keys_file, parse_keys

API_KEY_HEADER = "X-API-Key"


@dataclass(frozen=True)
class ServeLimits:
    """Request limits. ``max_body_bytes`` bounds the raw request; ``max_batch`` the images per
    request; ``max_json_images`` the images per request sent as nested JSON lists (slow to parse)."""

    max_batch: int = 256
    max_body_bytes: int = 8 * 1024 * 1024
    max_json_images: int = 16

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if not isinstance(v, int) or v < 1:
                raise InputError(f"ServeLimits.{k} must be a positive integer, got {v!r}")


class WireTensor(BaseModel):
    """A tensor on the wire: raw little-endian C-order bytes, base64-encoded."""

    model_config = ConfigDict(extra="forbid")
    dtype: Literal["float32", "uint8", "int64"] = Field(description="float32 (exact), uint8 (value/255) or int64")
    shape: list[int] = Field(min_length=1, description="e.g. [N, C, H, W]")
    data: str = Field(description="base64 of the raw bytes")


class PredictRequest(BaseModel):
    """``inputs``: a batch ``(N, C, H, W)`` in [0, 1], as a wire tensor or as nested lists (small batches)."""

    model_config = ConfigDict(extra="forbid")
    inputs: WireTensor | Annotated[list[Any], Field(min_length=1)] = Field(
        description="wire tensor (base64) or nested JSON lists of at least one image")
    response_encoding: Literal["base64", "json"] | None = Field(
        None, description="encoding of outputs; default: the encoding of inputs")


class PredictResponse(BaseModel):
    outputs: WireTensor | list[Any]
    output: Literal["logits", "probs", "label"]
    images: int = Field(description="images in this request = queries charged")
    used: int = Field(description="images charged to this key so far, this request included")
    budget: int | None
    remaining: int | None
    audit_seq: int


class ErrorResponse(BaseModel):
    detail: str
    code: str


class ApiError(Exception):
    """An HTTP error with a stable ``code`` and a message naming the problem and the value."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers or {}


class RateLimiter:
    """Per-key token buckets: ``rate`` requests/second, bursts of up to ``burst`` (default ``max(1, rate)``).

    In memory: a restart refills the buckets (budgets, which are persisted, are the hard limit)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, key: str, rate: float | None, burst: float | None) -> float:
        """Take one token; returns 0.0 on success, else the seconds to wait."""
        if rate is None:
            return 0.0
        cap = burst if burst is not None else max(1.0, rate)
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (cap, now))
            tokens = min(cap, tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate


def _coerce_keys(keys: Any) -> list[KeySpec] | None:
    if keys is None:
        return None
    if isinstance(keys, (str, Path)):
        return load_keys_file(keys)
    if isinstance(keys, list) and all(isinstance(k, KeySpec) for k in keys):
        return keys
    return parse_keys(keys, "keys")


def create_app(
    blackbox: BlackBox,
    *,
    keys: str | Path | list[KeySpec] | dict[str, Any] | None = None,
    db_path: str | Path = ":memory:",
    limits: ServeLimits | None = None,
    defense: str | None = None,
    defense_config: dict[str, Any] | None = None,
    class_names: list[str] | None = None,
    anonymous_budget: int | None = None,
    synchronous: str = "FULL",
    title: str = "bbdefense black-box API",
    detector: StatefulDetector | None = None,
    on_detect: Literal["reject", "ban", "log"] = "reject",
    charge_rejected: bool = True,
) -> Any:
    """Build the FastAPI app serving ``blackbox``.

    Args:
        blackbox: what to serve; its ``output`` (and ``top_k``) is what clients see.
        keys: a keys file (JSON/YAML), a list of :class:`KeySpec`, or a keys document; None keeps
            the keys already in ``db_path``, and with none at all the API is open (one shared
            ``anonymous`` account with ``anonymous_budget``).
        db_path: SQLite file holding budgets and the audit log (``":memory:"``: not persisted).
        limits: request limits (:class:`ServeLimits`).
        defense, defense_config: reported by ``/v1/info`` (the defense is already in ``blackbox``).
        class_names: names of the K classes (default ``"0"`` .. ``"K-1"``).
        synchronous: SQLite durability (see :class:`~bbdefense.serve.store.KeyStore`).
        detector, on_detect, charge_rejected: stateful detection (see the module docstring); the
            detector should keep its state in ``db_path`` too (``make_detector(name, db_path=db_path)``).

    Returns:
        a ``fastapi.FastAPI``; ``app.state.store`` is the :class:`KeyStore`, ``app.state.blackbox``
        the served black box.
    """
    require_extra("fastapi", "serve", "serving a model over HTTP")
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    import bbdefense

    limits = limits or ServeLimits()
    if on_detect not in ("reject", "ban", "log"):
        raise InputError(f"on_detect must be reject, ban or log, got {on_detect!r}")
    if class_names is not None and len(class_names) != blackbox.num_classes:
        raise InputError(f"class_names has {len(class_names)} names for {blackbox.num_classes} classes")
    store = KeyStore(db_path, keys=_coerce_keys(keys), anonymous_budget=anonymous_budget, synchronous=synchronous)
    limiter = RateLimiter()
    model_lock = threading.Lock()
    per_image = math.prod(blackbox.input_shape)
    info = {
        "name": blackbox.name,
        "version": bbdefense.__version__,
        "num_classes": blackbox.num_classes,
        "classes": list(class_names) if class_names is not None else [str(i) for i in range(blackbox.num_classes)],
        "input_shape": list(blackbox.input_shape),
        "output": blackbox.output,
        "top_k": blackbox.top_k,
        "bounds": [0.0, 1.0],
        "randomized": blackbox.randomized,
        "defense": defense,
        "defense_config": defense_config or {},
        "auth": "none" if store.open else f"header {API_KEY_HEADER} (or Authorization: Bearer)",
        "encodings": ["base64 float32", "base64 uint8 (value/255)", "nested JSON lists (small batches)"],
        "limits": asdict(limits),
        "stateful_detector": None if detector is None else detector.name,
        "on_detect": None if detector is None else on_detect,
    }

    app = FastAPI(title=title, version=bbdefense.__version__,
                  description="A black-box image classifier: one image = one query, charged to the caller's key.")
    app.state.store = store
    app.state.blackbox = blackbox
    app.state.limits = limits
    app.state.detector = detector
    err_responses: dict[int | str, dict[str, Any]] = {
        c: {"model": ErrorResponse, "description": d}
        for c, d in ((401, "missing or unknown API key"),
                     (403, "attack_suspected: a stateful detector flagged the query or banned the key"),
                     (413, "request or batch too large"),
                     (422, "malformed request or invalid images"), (429, "budget exhausted or rate limited"))}

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail, "code": exc.code}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:  # 404, 405...
        return JSONResponse({"detail": str(exc.detail), "code": f"http_{exc.status_code}"},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    def authorise(request: Request) -> KeyRecord:
        if store.open:
            rec = store.lookup(None)
            assert rec is not None
            return rec
        key = request.headers.get(API_KEY_HEADER)
        if key is None:
            auth = request.headers.get("authorization", "")
            key = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if not key:
            raise ApiError(401, "missing_key", f"missing API key: send it in the {API_KEY_HEADER} header")
        rec = store.lookup(key)
        if rec is None:
            raise ApiError(401, "unknown_key", "unknown or revoked API key")
        return rec

    @app.get("/healthz", summary="Liveness probe")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/info", summary="What the model takes and reveals")
    def get_info() -> dict[str, Any]:
        return info

    @app.get("/v1/usage", summary="The caller's budget", responses={401: err_responses[401]})
    def get_usage(request: Request) -> dict[str, Any]:
        rec = authorise(request)
        return {"key": rec.name, "used": rec.used, "budget": rec.budget, "remaining": rec.remaining,
                "rate": rec.rate, "burst": rec.burst}

    async def read_body(request: Request) -> bytes:
        cl = request.headers.get("content-length")
        if cl is not None:
            if not cl.isdigit():
                raise ApiError(422, "malformed", f"invalid Content-Length header {cl[:40]!r}")
            if int(cl) > limits.max_body_bytes:
                raise ApiError(413, "too_large", f"request body of {int(cl)} bytes exceeds the limit of "
                                                 f"{limits.max_body_bytes} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise ApiError(413, "too_large", f"request body exceeds the limit of {limits.max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def answer(rec: KeyRecord, body: bytes) -> dict[str, Any]:
        try:
            req = PredictRequest.model_validate_json(body)
        except ValidationError as exc:
            errs = exc.errors()
            others = [e for e in errs if tuple(e.get("loc", ()))[:1] != ("inputs",)]
            if not others and any(e["type"] == "too_short" for e in errs):  # {"inputs": []}
                raise ApiError(422, "invalid_images", "empty batch: send at least one image") from None
            first = (others or errs)[0]  # a problem outside `inputs` first: the union's branches say less
            where = ".".join(str(p) for p in first.get("loc", ())) or "body"
            raise ApiError(422, "malformed", f"malformed request at {where}: {first.get('msg')} "
                                             f"({exc.error_count()} error(s))") from None
        max_images = limits.max_batch
        inputs = req.inputs.model_dump() if isinstance(req.inputs, WireTensor) else req.inputs
        if isinstance(inputs, list):
            max_images = min(max_images, limits.max_json_images)
        json_note = " as JSON lists (use the base64 encoding for more)" if isinstance(inputs, list) else ""
        try:
            x, enc = decode_any(inputs, max_elements=(max_images + 1) * per_image)
        except InputError as exc:
            if "more than the limit" in str(exc):
                raise ApiError(413, "batch_too_large", f"{exc}; send at most {max_images} images per request"
                                                       f"{json_note}") from None
            raise ApiError(422, "malformed", str(exc)) from None
        if x.dim() >= 1 and x.shape[0] > max_images:
            raise ApiError(413, "batch_too_large", f"batch of {x.shape[0]} images exceeds the limit: send at most "
                                                   f"{max_images} images per request{json_note}")
        try:
            validate_images(x, blackbox.input_shape)
        except InputError as exc:
            raise ApiError(422, "invalid_images", str(exc)) from None
        n = int(x.shape[0])
        if n == 0:
            raise ApiError(422, "invalid_images", "empty batch: send at least one image")
        digest = batch_digest(x)
        flagged, score = 0, 0.0
        if detector is not None:
            decisions = detector.observe(rec.name, x)
            flagged = sum(d.flagged for d in decisions)
            score = max(d.score for d in decisions)
            if flagged and on_detect != "log":
                ban = on_detect == "ban"
                ch = store.record_detection(rec.key_hash, n, digest, flagged=flagged, score=score,
                                            action="banned" if ban else "rejected", charge=charge_rejected, ban=ban)
                raise ApiError(403, "attack_suspected",
                               f"query refused: the stateful detector ({detector.name}) flagged {flagged} of {n} "
                               f"image(s) of key {rec.name!r} as part of a query attack (score {score:g})"
                               f"{'; the key is now banned' if ban else ''}; "
                               f"{n if ch.ok else 0} image(s) charged")
        charge = store.charge(rec.key_hash, n, digest)
        if not charge.ok:
            raise ApiError(429, "budget_exceeded",
                           f"query budget exceeded for key {rec.name!r}: {charge.used} of {charge.budget} images "
                           f"used, a batch of {n} was refused")
        try:
            with model_lock:
                out = blackbox.query(x)
        except Exception as exc:  # the model failed after the charge: refund, then a 500
            store.refund(rec.key_hash, n, digest)
            raise ApiError(500, "model_error", f"the model failed on this batch (charge refunded): "
                                               f"{type(exc).__name__}: {exc}") from exc
        if flagged:  # on_detect == "log": answered, recorded
            store.log_detection(rec.name, n, flagged=flagged, score=score, charged=n)
        encoding = req.response_encoding or enc
        if encoding == "json":
            outputs: Any = out.tolist()
        else:
            outputs = encode_tensor(out, "int64" if blackbox.output == "label" else "float32")
        return {"outputs": outputs, "output": blackbox.output, "images": n, "used": charge.used,
                "budget": charge.budget, "remaining": charge.remaining, "audit_seq": charge.seq}

    @app.post(
        "/v1/predict", summary="Classify a batch (one image = one query)", response_model=PredictResponse,
        responses=err_responses,
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/PredictRequest"}}}}},
    )
    async def predict(request: Request) -> dict[str, Any]:
        rec = authorise(request)
        if detector is not None:
            reason = store.banned(rec.key_hash)
            if reason is not None:
                store.record_detection(rec.key_hash, 0, "", flagged=0, score=0.0, action="refused_banned",
                                       charge=False)
                raise ApiError(403, "attack_suspected", f"key {rec.name!r} is banned: {reason}")
        wait = limiter.acquire(rec.key_hash, rec.rate, rec.burst)
        if wait > 0:
            raise ApiError(429, "rate_limited", f"rate limit of {rec.rate:g} requests/s exceeded for key "
                                                f"{rec.name!r}; retry in {wait:.2f}s",
                           headers={"Retry-After": str(max(1, math.ceil(wait)))})
        body = await read_body(request)
        result: dict[str, Any] = await run_in_threadpool(answer, rec, body)
        return result

    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = default_openapi()
            comps = schema.setdefault("components", {}).setdefault("schemas", {})
            extra = PredictRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in extra.pop("$defs", {}).items():
                comps.setdefault(name, sub)
            comps["PredictRequest"] = extra
            app.openapi_schema = schema
        return app.openapi_schema

    # FastAPI documents replacing app.openapi as the way to customise the schema; mypy forbids method assignment.
    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema
    return app


def run_server(app: Any, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning") -> None:
    """Serve ``app`` with uvicorn until interrupted (blocking)."""
    uvicorn = require_extra("uvicorn", "serve", "serving a model over HTTP")

    uvicorn.run(app, host=host, port=port, log_level=log_level)


__all__ = ["API_KEY_HEADER", "ApiError", "PredictRequest", "PredictResponse", "RateLimiter", "ServeLimits",
           "WireTensor", "create_app", "run_server"]
