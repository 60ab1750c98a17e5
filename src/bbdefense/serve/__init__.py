"""Serving: a (defended) model as a black-box HTTP API, and black boxes on remote APIs.

* :func:`create_app` (FastAPI) serves any :class:`~bbdefense.models.BlackBox` with API keys,
  persisted per-key budgets, rate and size limits and an audit log (:mod:`.app`, :mod:`.store`,
  :mod:`.audit`).
* :class:`HttpBlackBox` and :func:`json_api_blackbox` are black boxes whose backend is HTTP
  (:mod:`.client`); both sides share the tensor encoding of :mod:`.wire`.

``fastapi``/``uvicorn``/``httpx`` are imported only when an app or a client is built.
"""

from ..models.remote import HttpBackend, HttpBlackBox, JsonApiBackend, json_api_blackbox
from ..models.wire import decode_tensor, encode_tensor
from .app import ServeLimits, create_app, run_server
from .model import build_served_blackbox, load_defense_config, resolve_defense
from .store import KeySpec, KeyStore, load_keys_file

__all__ = ["HttpBackend", "HttpBlackBox", "JsonApiBackend", "KeySpec", "KeyStore", "ServeLimits",
           "build_served_blackbox", "create_app", "decode_tensor", "encode_tensor", "json_api_blackbox",
           "load_defense_config", "load_keys_file", "resolve_defense", "run_server"]
