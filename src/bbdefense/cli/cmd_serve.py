"""``bbdefense serve``: a (defended) checkpoint as a black-box HTTP API; ``bbdefense serve-audit``:
check and export its audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, cast

import typer

from . import options as opt
from .common import console, out, seed_everything


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("serve-audit")(serve_audit)


def serve(
    model: str = opt.model_option(help="Not a URL; --defense needs a kind with a torch module."),
    defense: str | None = typer.Option(None, "--defense", help="Owner-side defense from DEFENSES (e.g. rfd)."),
    defense_config: Path | None = typer.Option(None, "--defense-config",
                                                  help="JSON/YAML keyword arguments of the defense."),
    output: str = typer.Option("probs", "--output", help="What the API reveals: probs | logits | label."),
    top_k: int | None = opt.count_option(None, "--top-k",
                                        help="With --output probs: reveal only the k largest."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = opt.port_option(8000),
    keys: Path | None = typer.Option(None, "--keys", help="JSON/YAML keys file (name, key, budget, rate, burst)."),
    db: Path = typer.Option(Path("runs/serve/state.sqlite3"), "--db",
                            help="SQLite file of budgets and the audit log (persists across restarts)."),
    budget: int | None = opt.budget_option(None, "Budget (images) of the open API when no keys exist.", minimum=0),
    max_batch: int = opt.count_option(256, "--max-batch", help="Images per request."),
    max_body_mb: float = opt.positive_option(8.0, "--max-body-mb", help="Request body limit in MiB."),
    backend: str = opt.backend_option(),
    durability: str = typer.Option("full", "--durability",
                                   help="full: every charge fsynced; normal: survives process crashes only."),
    seed: int = opt.seed_option(),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
    detector: str | None = typer.Option(None, "--detector",
                                        help="Stateful detector of query attacks: blacklight | piha."),
    detector_config: Path | None = typer.Option(None, "--detector-config",
                                                help="JSON/YAML keyword arguments of the detector."),
    on_detect: str = typer.Option("reject", "--on-detect",
                                  help="reject: 403 attack_suspected; ban: reject and ban the key; log: answer."),
    charge_rejected: bool = typer.Option(True, "--charge-rejected/--no-charge-rejected",
                                         help="Charge the images of a rejected request."),
) -> None:
    """Serve a model as a black-box API: GET /v1/info, POST /v1/predict, GET /healthz (docs at /docs)."""
    from ..errors import InputError
    from ..serve import ServeLimits, build_served_blackbox, create_app, load_defense_config, run_server
    from ..serve.store import check_state_file, load_keys_file

    seed_everything(seed)
    if durability not in ("full", "normal"):
        raise InputError(f"--durability must be full or normal, got {durability!r}")
    # everything that can be refused is refused before the model loads and before the state file is created
    key_specs = load_keys_file(keys) if keys is not None else None
    check_state_file(db)
    opt.check_writable_dir(db.parent, "--db")
    opt.check_free_port(host, port)
    if on_detect not in ("reject", "ban", "log"):
        raise InputError(f"--on-detect must be reject, ban or log, got {on_detect!r}")
    det = None
    if detector is not None:
        from ..defenses.stateful import DETECTORS, make_detector

        DETECTORS[detector]  # an unknown name is refused before the model loads
        det = make_detector(detector, db_path=db, **load_defense_config(detector_config))
    elif detector_config is not None:
        raise InputError("--detector-config needs --detector")
    limits = ServeLimits(max_batch=max_batch, max_body_bytes=max(1, int(max_body_mb * 1024 * 1024)))
    cfg = load_defense_config(defense_config)
    bb = build_served_blackbox(model, defense=defense, defense_config=cfg,
                               output=opt.narrow_choice(output, opt.OUTPUTS, "--output"), top_k=top_k,
                               backend=opt.narrow_choice(backend, opt.BACKENDS, "--backend"))
    app = create_app(bb, keys=key_specs, db_path=db, limits=limits, defense=defense, defense_config=cfg,
                     anonymous_budget=budget, synchronous=durability.upper(), detector=det,
                     on_detect=cast(Literal["reject", "ban", "log"], on_detect), charge_rejected=charge_rejected)
    store = app.state.store
    if store.open:
        console.print(f"warning: no API keys (--keys): the API is open, one shared budget of "
                      f"{'unlimited' if budget is None else budget} images", markup=False)
    if det is not None:
        out.print(f"stateful detector: {det!r}, on detection: {on_detect}", markup=False, soft_wrap=True)
    out.print(f"serving {bb.name} ({bb.output}{'' if top_k is None else f', top-{top_k}'}"
              f"{', randomized' if bb.randomized else ''}) on http://{host}:{port}  (state {db}; docs /docs)",
              markup=False, soft_wrap=True)
    run_server(app, host=host, port=port, log_level=log_level)


def serve_audit(
    db: Path = typer.Option(Path("runs/serve/state.sqlite3"), "--db", help="The server's SQLite state file."),
    jsonl: Path | None = typer.Option(None, "--jsonl", help="Also export the log as JSON lines here."),
) -> None:
    """Check that each key's budget use equals its audit log, per key; optionally export the log."""
    from ..errors import ConfigError
    from ..serve.audit import detections_per_key, export_jsonl, verify_audit

    res = verify_audit(db)
    out.print(f"{'key':20s} {'used':>10s} {'audited':>10s}  consistent")
    for k, v in res.items():
        out.print(f"{k:20s} {v['used']:>10d} {v['audited']:>10d}  {v['consistent']}", markup=False)
    det = detections_per_key(db)
    if det:
        out.print(f"\nstateful detections\n{'key':20s} {'requests':>9s} {'flagged':>8s} {'rejected':>9s} "
                  f"{'logged':>7s} {'charged':>8s} {'max score':>9s}  banned")
        for k, d in det.items():
            out.print(f"{k:20s} {d['requests']:>9d} {d['flagged']:>8d} {d['rejected']:>9d} {d['logged']:>7d} "
                      f"{d['charged']:>8d} {d['max_score']:>9g}  {d['banned'] or 'no'}", markup=False)
    if jsonl is not None:
        out.print(f"wrote {export_jsonl(db, jsonl)} rows to {jsonl}", markup=False)
    if not all(v["consistent"] for v in res.values()):
        raise ConfigError(f"audit log of {db} disagrees with the budgets (see above)")
