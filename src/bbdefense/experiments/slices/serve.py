"""Demo slice: the target served as a black-box HTTP API (in process), queried through HttpBlackBox."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from ...errors import QueryBudgetExceeded
from ...records import table
from ...utils import require_extra
from ..context import DemoContext, register_slice

TITLE = "Serving: the target as an HTTP API"


@register_slice("serve", TITLE, order=90, quick=True)
def serve_slice(ctx: DemoContext) -> None:
    """Serve the target with one API key and a budget; classify test images over HTTP and in process;
    show that both agree, that the server charged exactly the images the client counted, and that the
    budget refuses the batch that would exceed it (charging nothing)."""
    import warnings

    with warnings.catch_warnings():  # starlette's TestClient warns that it prefers httpx2
        warnings.simplefilter("ignore", UserWarning)
        require_extra("fastapi", "serve", "the serving slice")
        from fastapi.testclient import TestClient

    from ...serve import HttpBlackBox, create_app
    from ...serve.audit import verify_audit

    n = 200 if ctx.quick else 500
    budget = n + 50
    sec = ctx.section(TITLE, f"The target served by `bbdefense serve` (FastAPI, in-process client here; the same "
                             f"app runs under uvicorn), one API key with a budget of {budget} images persisted in "
                             "SQLite. `HttpBlackBox` is an ordinary BlackBox over HTTP, so every attack or "
                             "certification runs against it unchanged. See docs/serving.md.")
    test = ctx.splits.test
    x, y = test.x[:n], test.y[:n]
    served = ctx.blackbox(output="probs", name="target")
    local = ctx.blackbox(output="probs", name="target-local")
    with tempfile.TemporaryDirectory(prefix="bbdefense-demo-serve-") as tmp:
        db = Path(tmp) / "state.sqlite3"
        app = create_app(served, keys={"keys": [{"name": "demo", "key": "demo-key", "budget": budget}]}, db_path=db,
                         synchronous="NORMAL")
        with TestClient(app) as client:
            remote = HttpBlackBox("http://testserver", "demo-key", client=client)
            t0 = time.perf_counter()
            p_remote = torch.cat([remote.query(x[i:i + 100]) for i in range(0, n, 100)])
            t_remote = time.perf_counter() - t0
            t0 = time.perf_counter()
            p_local = torch.cat([local.query(x[i:i + 100]) for i in range(0, n, 100)])
            t_local = time.perf_counter() - t0
            used = remote.usage()["used"]
            refused = False
            try:
                remote.query(x[:64])  # 50 images left: the batch of 64 is refused before any work
            except QueryBudgetExceeded:
                refused = True
            used_after = remote.usage()["used"]
        app.state.store.close()
        consistent = all(v["consistent"] for v in verify_audit(db).values())
    diff = float((p_remote - p_local).abs().max())
    acc = [float((p.argmax(1) == y).float().mean()) for p in (p_local, p_remote)]
    rows = [["in process (BlackBox)", n, acc[0], local.stats.queries, "-", f"{t_local:.2f}"],
            ["HTTP (HttpBlackBox -> create_app)", n, acc[1], remote.stats.queries, used, f"{t_remote:.2f}"]]
    ctx.run.add_table({**table("Same model, local and over HTTP",
                               ["path", "images", "accuracy", "queries (client)", "images charged (server)",
                                "seconds"], rows,
                               f"max |probs_http - probs_local| = {diff:.1e}; one image = one query on both sides"),
                       "section": sec})
    ctx.run.add_table({**table("Budget enforcement", ["budget", "used", "next batch", "refused", "used after",
                                                      "audit log == budgets"],
                               [[budget, used, 64, refused, used_after, consistent]],
                               "the refused batch is charged nothing; budgets and audit rows are one SQLite "
                               "transaction"), "section": sec})
    ctx.run.add_check("serve: HTTP equals local", diff <= 1e-5, f"max |diff| = {diff:.2e}")
    ctx.run.add_check("serve: accounting exact", used == remote.stats.queries == n and refused and used_after == n
                      and consistent, f"charged {used} for {remote.stats.queries} counted, refused={refused}")
    ctx.run.set_metrics(serve_queries=remote.stats.queries, serve_max_abs_diff=diff)
