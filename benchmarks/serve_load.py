"""Bounded load test of ``bbdefense serve`` on loopback, with exact budget accounting.

For each server configuration (the plain model; the model behind a randomized input-noise defense),
a real uvicorn server is started in a subprocess on 127.0.0.1, and ``--clients`` threads send
``POST /v1/predict`` requests at batch 1 and batch 64 (each configuration/batch with its own API key).
It prints requests/s, images/s and p50/p99 latency, then checks the accounting exactly: the images
charged to every key (``GET /v1/usage``) must equal the images the clients sent, every request must
have been answered 200, and the audit log must agree with the budgets (``verify_audit``).
The in-process ``BlackBox.query`` time of the same batches is given for reference.

    .venv/bin/python benchmarks/serve_load.py                 # ~1-2 minutes on 2 quiet cores
    .venv/bin/python benchmarks/serve_load.py --quick         # fewer requests
    .venv/bin/python benchmarks/serve_load.py --defense rnd   # an owner-side DEFENSES entry instead
    .venv/bin/python benchmarks/serve_load.py --detector blacklight            # the servers with a detector
    .venv/bin/python benchmarks/serve_load.py --detector-overhead --stored 100000   # per-image detector cost

``--detector-overhead`` measures the stateful detectors alone (no server): a state file pre-filled with
``--stored`` queries (synthetic fingerprints bulk-inserted, the same tables and indexes as real ones), then
``observe`` at batch 1 on MNIST-shaped images (fresh digits-like images and near-duplicate probes of them),
reporting p50/p99 ms per image, the state file size and the detector's resident memory growth.

The model is an untrained, seeded SmallCNN on 28x28 inputs (MNIST shape): timings do not depend on
the weights. The server runs with ``--threads`` torch threads (default 1).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SHAPE = (1, 28, 28)


class InputNoise(nn.Module):
    """Randomized input-noise defense (RND-style): ``f(clip(x + sigma * N(0, I)))``, own generator."""

    randomized = True

    def __init__(self, module: nn.Module, *, sigma: float = 0.02, seed: int | None = 0) -> None:
        super().__init__()
        self.module, self.sigma = module, sigma
        self.gen = torch.Generator().manual_seed(0 if seed is None else seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module((x + self.sigma * torch.randn(x.shape, generator=self.gen)).clamp(0, 1))


def make_checkpoint(out: Path) -> Path:
    from bbdefense.models import CheckpointMeta, build_model, save_checkpoint

    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = build_model("smallcnn", num_classes=10, in_channels=1, image_size=28)
    kw = {"num_classes": 10, "in_channels": 1, "image_size": 28}
    save_checkpoint(out, module, CheckpointMeta(arch="smallcnn", arch_kwargs=kw, num_classes=10,
                                                input_shape=list(SHAPE), seed=0))
    return out


def serve_main(args: argparse.Namespace) -> None:
    """Server subprocess: build the black box (optionally defended) and run uvicorn."""
    torch.set_num_threads(args.threads)
    from bbdefense.models import BlackBox, load_checkpoint
    from bbdefense.serve import ServeLimits, build_served_blackbox, create_app, run_server

    if args.defense == "noise":
        module, _ = load_checkpoint(args.model)
        bb = BlackBox.from_module(InputNoise(module), num_classes=10, input_shape=SHAPE, output="probs",
                                  name="smallcnn+noise")
    else:
        bb = build_served_blackbox(args.model, defense=args.defense, output="probs")
    det = None
    if args.detector:
        from bbdefense.defenses.stateful import make_detector

        det = make_detector(args.detector, db_path=args.db)
    app = create_app(bb, keys=args.keys, db_path=args.db, defense=args.defense, limits=ServeLimits(max_batch=64),
                     synchronous=args.durability, detector=det, on_detect="log")
    run_server(app, host="127.0.0.1", port=args.port)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(ckpt: Path, keys: Path, db: Path, defense: str | None, durability: str,
                 threads: int, detector: str | None = None) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = free_port()
    cmd = [sys.executable, __file__, "--_serve", "--model", str(ckpt), "--keys", str(keys), "--db", str(db),
           "--port", str(port), "--durability", durability, "--threads", str(threads)]
    if defense:
        cmd += ["--defense", defense]
    if detector:
        cmd += ["--detector", detector]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        if proc.poll() is not None:
            # stderr=PIPE, so proc.stderr is set
            raise RuntimeError(f"server failed: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start within 120 s")


def load(url: str, key: str, batch: int, requests: int, clients: int) -> dict[str, Any]:
    """``clients`` threads share ``requests`` POSTs of ``batch`` images; returns latencies and counts."""
    import httpx

    from bbdefense.models.wire import encode_tensor

    x = torch.rand(batch, *SHAPE, generator=torch.Generator().manual_seed(batch))
    body = json.dumps({"inputs": encode_tensor(x)}).encode()
    lat: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    todo = iter(range(requests))

    def worker() -> None:
        with httpx.Client(timeout=60.0, headers={"X-API-Key": key, "content-type": "application/json"}) as c:
            while True:
                with lock:
                    if next(todo, None) is None:
                        return
                t0 = time.perf_counter()
                r = c.post(url + "/v1/predict", content=body)
                dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt)
                    statuses.append(r.status_code)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    ok = sum(s == 200 for s in statuses)
    return {"requests": len(statuses), "ok": ok, "sent_images": ok * batch, "wall": wall,
            "rps": len(statuses) / wall, "ips": ok * batch / wall,
            "p50": 1000 * statistics.median(lat), "p99": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))]}


def local_ms(ckpt: Path, batch: int, defense: str | None, reps: int) -> float:
    from bbdefense.models import BlackBox, load_checkpoint

    module, _ = load_checkpoint(ckpt)
    m = InputNoise(module) if defense == "noise" else module
    bb = BlackBox.from_module(m, num_classes=10, input_shape=SHAPE, output="probs")
    x = torch.rand(batch, *SHAPE, generator=torch.Generator().manual_seed(batch))
    bb.query(x)
    t0 = time.perf_counter()
    for _ in range(reps):
        bb.query(x)
    return 1000 * (time.perf_counter() - t0) / reps


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def prefill(det: Any, stored: int, seed: int = 0) -> None:
    """Bulk-insert ``stored`` synthetic queries (random fingerprints) into a detector's tables."""
    import numpy as np

    rng = np.random.default_rng(seed)
    db, name = det._db, det.name
    db.execute("BEGIN IMMEDIATE")
    now = time.time()
    for start in range(0, stored, 10_000):
        qids = range(start + 1, min(stored, start + 10_000) + 1)
        db.executemany(f"INSERT INTO {name}_queries (qid, time, account, tag, digest, score, flagged) "
                       "VALUES (?,?,?,?,?,?,?)",
                       [(q, now, f"acct{q % 1000}", 0, int(rng.integers(-2**63, 2**63 - 1)), 0.0, 0) for q in qids])
        if name == "blacklight":
            keys = rng.integers(-2**63, 2**63 - 1, size=(len(qids), det.top_k))
            db.executemany("INSERT INTO blacklight_log (qid, keys) VALUES (?, ?)",
                           [(q, row.tobytes()) for q, row in zip(qids, keys, strict=True)])
        else:
            db.executemany("INSERT INTO piha_hashes (qid, tag, hash) VALUES (?,?,?)",
                           [(q, 0, int(rng.integers(-2**63, 2**63 - 1))) for q in qids])
    db.execute("COMMIT")


def detector_overhead(names: list[str], stored: int, n: int, config: dict[str, Any] | None = None) -> None:
    """Per-image ``observe`` time at batch 1 with ``stored`` queries already in the state file; ``config``:
    keyword arguments of every detector (e.g. the hit rule, ``{"min_hits": 4, "hit_window": 5}``)."""
    from bbdefense.defenses.stateful import make_detector

    g = torch.Generator().manual_seed(0)
    base = torch.zeros(n // 2, *SHAPE)
    for i in range(len(base)):  # digits-like: black background, a few bright strokes
        for _ in range(4):
            r, c = (int(v) for v in torch.randint(4, 22, (2,), generator=g))
            base[i, 0, r:r + 3, c:c + 6] = 0.6 + 0.4 * torch.rand((), generator=g)
    probes = (base + 0.3 * torch.sign(torch.randn(base.shape, generator=g)) * (torch.rand(base.shape, generator=g)
                                                                                 < 0.01)).clamp(0, 1)
    x = torch.stack([base, probes], 1).reshape(-1, *SHAPE)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bbdefense-detector-overhead-") as tmp:
        for name in names:
            db = Path(tmp) / f"{name}.sqlite3"
            rss0 = _rss_mb()
            det = make_detector(name, db_path=db, **(config or {}))
            t0 = time.perf_counter()
            prefill(det, stored)
            fill = time.perf_counter() - t0
            det.close()
            det = make_detector(name, db_path=db, **(config or {}))  # a restart: state read back from the file
            lat = []
            flagged = 0
            for i in range(len(x)):
                t0 = time.perf_counter()
                flagged += det.observe("bench", x[i:i + 1])[0].flagged
                lat.append(1000 * (time.perf_counter() - t0))
            lat.sort()
            size = sum(f.stat().st_size for f in Path(tmp).glob(f"{name}.sqlite3*")) / 2**20
            rows.append([name, stored, len(x), f"{statistics.median(lat):.3f}", f"{lat[int(0.99 * len(lat))]:.3f}",
                         f"{statistics.fmean(lat):.3f}", flagged, f"{size:.0f}", f"{_rss_mb() - rss0:.0f}",
                         f"{fill:.0f}"])
            det.close()
    cols = ["detector", "stored queries", "observed", "p50 ms/image", "p99 ms/image", "mean ms/image",
            "flagged (of half probes)", "state file MiB", "RSS growth MiB", "prefill s"]
    print(f"stateful detector overhead at batch 1, MNIST-shaped images {SHAPE}, 1 thread, config {config or {}}")
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" for _ in cols) + "|")
    for r in rows:
        print("| " + " | ".join(str(v) for v in r) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--_serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--keys", type=Path)
    ap.add_argument("--db", type=Path)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--defense", default=None, help="'noise' (built in) or a DEFENSES name; default: both "
                                                    "plain and noise")
    ap.add_argument("--durability", default="FULL", help="FULL (default) or NORMAL")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    ap.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    ap.add_argument("--quick", action="store_true", help="fewer requests")
    ap.add_argument("--detector", default=None, help="run the servers with this stateful detector (on_detect=log)")
    ap.add_argument("--detector-overhead", action="store_true", help="measure the detectors alone (no server)")
    ap.add_argument("--detectors", default="blacklight,piha", help="detectors of --detector-overhead")
    ap.add_argument("--detector-config", default=None,
                    help='JSON keyword arguments of the --detector-overhead detectors, e.g. \'{"min_hits": 4, '
                         '"hit_window": 5}\' (the hit rule)')
    ap.add_argument("--stored", type=int, default=100_000, help="queries stored before --detector-overhead measures")
    ap.add_argument("--observe", type=int, default=1000, help="images observed by --detector-overhead")
    args = ap.parse_args()
    if args._serve:
        serve_main(args)
        return
    torch.set_num_threads(1)
    if args.detector_overhead:
        detector_overhead(args.detectors.split(","), args.stored, args.observe,
                          json.loads(args.detector_config) if args.detector_config else None)
        return
    from bbdefense.serve.audit import verify_audit

    plan = {1: 60 if args.quick else 300, 64: 12 if args.quick else 60}
    configs = [None, "noise"] if args.defense is None else [args.defense]
    rows, errors = [], 0
    with tempfile.TemporaryDirectory(prefix="bbdefense-serve-load-") as tmp:
        ckpt = make_checkpoint(Path(tmp) / "smallcnn28")
        for cfg in configs:
            name = cfg or "none"
            keys = Path(tmp) / f"keys-{name}.json"
            keys.write_text(json.dumps({"keys": [{"name": f"b{b}", "key": f"key-b{b}", "budget": 10**9}
                                                 for b in plan]}))
            db = Path(tmp) / f"state-{name}.sqlite3"
            proc, url = start_server(ckpt, keys, db, cfg, args.durability, args.threads, args.detector)
            try:
                import httpx

                for b, n in plan.items():
                    load(url, f"key-b{b}", b, max(4, n // 10), args.clients)  # warm-up (charged too)
                    used0 = httpx.get(url + "/v1/usage", headers={"X-API-Key": f"key-b{b}"}).json()["used"]
                    res = load(url, f"key-b{b}", b, n, args.clients)
                    used1 = httpx.get(url + "/v1/usage", headers={"X-API-Key": f"key-b{b}"}).json()["used"]
                    acct = abs((used1 - used0) - res["sent_images"]) + (res["requests"] - res["ok"])
                    errors += acct
                    rows.append([name, b, res["requests"], f"{res['rps']:.1f}", f"{res['ips']:.0f}",
                                 f"{res['p50']:.1f}", f"{res['p99']:.1f}", f"{local_ms(ckpt, b, cfg, 20):.2f}",
                                 res["sent_images"], used1 - used0, acct])
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            audit = verify_audit(db)
            errors += sum(not v["consistent"] for v in audit.values())
    cols = ["defense", "batch", "requests", "req/s", "images/s", "p50 ms", "p99 ms", "local ms/batch",
            "images sent", "images charged", "acct errors"]
    widths = [max(len(str(c)), *(len(str(r[i])) for r in rows)) for i, c in enumerate(cols)]
    print(f"serve load test: {args.clients} client threads on loopback, server torch threads {args.threads}, "
          f"durability {args.durability}, SmallCNN 1x28x28, output probs, detector {args.detector or 'none'}")
    print("| " + " | ".join(str(c).ljust(w) for c, w in zip(cols, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)) + " |")
    print(f"accounting errors (charged != sent, non-200 answers, audit/budget disagreements): {errors}")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
