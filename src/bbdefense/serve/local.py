"""A served model on a fresh in-process server, for evaluations and demos: :func:`local_accounts`
opens ``create_app`` (optionally with a stateful detector) under FastAPI's in-process client and yields
one :class:`~bbdefense.models.remote.HttpBlackBox` per API key, so every query takes the real HTTP path
(validation, detector, charging, audit) without a socket."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from ..defenses.stateful import make_detector
from ..models.blackbox import BlackBox
from ..models.remote import HttpBlackBox
from ..utils import require_extra
from .app import create_app


@contextmanager
def local_accounts(blackbox: BlackBox, accounts: int = 1, *, detector: str | None = None,
                   detector_config: dict[str, Any] | None = None,
                   on_detect: Literal["reject", "ban", "log"] = "reject", charge_rejected: bool = True,
                   db_path: str | Path = ":memory:") -> Iterator[list[HttpBlackBox]]:
    """Serve ``blackbox`` with ``accounts`` keys (``acct0``...) and a fresh ``detector`` state in ``db_path``
    (``":memory:"``: nothing kept); yields one client per key. Closed on exit."""
    require_extra("fastapi", "serve", "a served model (the detector evaluation)")
    require_extra("httpx", "serve", "a served model (the detector evaluation)")
    with warnings.catch_warnings():  # starlette's TestClient warns that it prefers httpx2
        warnings.simplefilter("ignore", UserWarning)
        from fastapi.testclient import TestClient

    det = None if detector is None else make_detector(detector, db_path=db_path, **dict(detector_config or {}))
    keys = {"keys": [{"name": f"acct{i}", "key": f"key-{i}"} for i in range(accounts)]}
    app = create_app(blackbox, keys=keys, db_path=db_path, synchronous="NORMAL", detector=det, on_detect=on_detect,
                     charge_rejected=charge_rejected)
    try:
        with TestClient(app) as client:
            yield [HttpBlackBox("http://testserver", f"key-{i}", client=client, retries=0) for i in range(accounts)]
    finally:
        app.state.store.close()
        if det is not None:
            det.close()


__all__ = ["local_accounts"]
