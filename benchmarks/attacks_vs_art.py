"""Benchmark: our score attacks vs IBM ART's (Square, SimBA) on the MNIST target, and the
throughput of every score attack against the raw batched forward of the model.

    .venv/bin/python benchmarks/attacks_vs_art.py [--n 100] [--budget 1000] [--threads 1] [--skip-art]
        [--art-iters queries|iterations|N] [--backend torch|onnx]

ART 1.20.1 is installed into its own venv ``.cache/art-venv`` by ``_art_env.py`` (pinned by
constraints.txt). The target is the demo's SmallCNN on MNIST-5k (trained once, cached under
``.cache/bench``). Equal budgets: Square gets the same number of *queries* per image by default
(ours spends 1 query per image per iteration, ART ~3, so ART runs budget // 3 iterations;
``--art-iters iterations`` gives both the same iterations instead);
SimBA gets the same number of iterations (ART: 2 queries each, always; ours: 1 or 2). Queries are
counted by a wrapper around the model in both cases. Timings depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
# E402 below: these imports need the sys.path entries set here (the script runs without installing).
sys.path.insert(0, str(ROOT / "benchmarks"))
from _art_env import ensure_art_venv  # noqa: E402

CACHE = ROOT / ".cache"


def target() -> Path:
    from bbdefense.experiments.demo import DEMO_ARCH, DEMO_DATASET, DEMO_TRAIN
    from bbdefense.training import train_target

    path, _ = train_target(DEMO_ARCH, DEMO_DATASET, CACHE / "bench" / f"target_{DEMO_ARCH}_{DEMO_DATASET}",
                           DEMO_TRAIN, reuse=True)
    return path


def run_art(py: Path, job: dict) -> dict:
    out = subprocess.run([str(py), str(ROOT / "benchmarks" / "_art_worker.py"), json.dumps(job)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt_table(title: str, cols: list[str], rows: list[list]) -> str:
    def f(v: object) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = [f"\n{title}\n", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(f(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--budget", type=int, default=1000, help="Square: queries per image (ours: = iterations)")
    ap.add_argument("--art-iters", default="queries",
                    help="ART Square iterations: 'queries' (default: budget // 3, so that ART, which spends 3 "
                         "queries per iteration, gets the same query budget), 'iterations' (= budget: ART gets 3x "
                         "the queries) or a number")
    ap.add_argument("--simba-iters", type=int, default=200)
    ap.add_argument("--simba-n", type=int, default=None, help="images for SimBA (default --n)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--p-init", type=float, default=0.8, help="Square p_init for both (ART default = MNIST ref)")
    ap.add_argument("--tp-queries", type=int, default=200, help="queries per image in the throughput runs")
    ap.add_argument("--simba-freq", type=int, default=8, help="SimBA-DCT low-frequency block side, both impls")
    ap.add_argument("--skip-art", action="store_true")
    ap.add_argument("--skip-square", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                    help="how OUR attacks call the target (ART always calls the torch module): onnx exports it once "
                         "and runs it with onnxruntime behind the same BlackBox counter")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from bbdefense.attacks import ATTACKS
    from bbdefense.data import load_dataset, make_splits
    from bbdefense.evaluation.attacks import first_correct
    from bbdefense.models import BlackBox, load_checkpoint

    ckpt = target()
    module, meta = load_checkpoint(ckpt)
    shape = tuple(meta["input_shape"])
    test = make_splits(load_dataset("mnist5k"), seed=0).test
    if args.backend == "onnx":
        from bbdefense.models import export_onnx
        from bbdefense.models.backends import OnnxBackend

        onnx_path = export_onnx(module, CACHE / "bench" / "target.onnx", shape)

        def make_bb(**kw: object) -> BlackBox:
            return BlackBox(OnnxBackend(onnx_path, threads=args.threads), num_classes=10, input_shape=shape, **kw)
    else:
        def make_bb(**kw: object) -> BlackBox:
            return BlackBox.from_module(module, input_shape=shape, **kw)

    bb0 = make_bb()
    sel, _, _ = first_correct(bb0, test.x, test.y, args.n)
    x, y = test.x[sel], test.y[sel]
    data = CACHE / "bench" / "images.npz"
    np.savez(data, x=x.numpy(), y=y.numpy())
    py = None if args.skip_art else ensure_art_venv()
    print(f"target {ckpt.name}, {len(x)} correctly classified MNIST-5k test images, threads={args.threads}, "
          f"our backend {args.backend}, "
          f"torch {torch.__version__}; shared machine: timings are noisy")

    art_iters = (args.budget // 3 if args.art_iters == "queries" else args.budget if args.art_iters == "iterations"
                 else int(args.art_iters))
    rows = []
    for eps in () if args.skip_square else (0.1, 0.15):
        bb = make_bb(log_queries=True)
        t0 = time.perf_counter()
        res = ATTACKS["square"](eps=eps, max_queries=args.budget, p_init=args.p_init).run(bb, x, y)
        secs = time.perf_counter() - t0
        iters = bb.stats.calls  # model calls (ours: one batched call per iteration)
        rows.append(["ours", eps, res.success_rate, bb.stats.queries, bb.stats.queries / args.budget / len(x),
                     iters / args.budget, secs])
        if py is not None:
            art = run_art(py, {"attack": "square", "model": str(ckpt), "data": str(data), "eps": eps,
                               "iters": art_iters, "p_init": args.p_init, "threads": args.threads})
            if "error" in art:
                rows.append(["ART", eps, art["error"], "-", "-", "-", "-"])
            else:
                rows.append(["ART", eps, art["success_rate"], art["queries"], art["queries"] / art_iters / len(x),
                             art["calls"] / art_iters, art["seconds"]])
    print(fmt_table(f"Square linf, {len(x)} images, ours {args.budget} queries/image (= iterations), ART "
                    f"{art_iters} iterations, p_init {args.p_init}",
                    ["impl", "eps", "success rate", "queries", "queries / (image x iteration)",
                     "model calls / iteration", "seconds"], rows))

    ns = args.simba_n or len(x)
    rows = []
    bb = make_bb()
    t0 = time.perf_counter()
    res = ATTACKS["simba"](basis="dct", step=0.2, eps=None, freq_dims=args.simba_freq,
                           max_queries=2 * args.simba_iters).run(bb, x[:ns], y[:ns])
    secs = time.perf_counter() - t0
    rows.append(["ours (batched)", res.success_rate, bb.stats.queries, res.audit_queries, secs])
    if py is not None:
        np.savez(data, x=x[:ns].numpy(), y=y[:ns].numpy())
        art = run_art(py, {"attack": "simba", "basis": "dct", "step": 0.2, "model": str(ckpt), "data": str(data),
                           "iters": args.simba_iters, "freq": args.simba_freq, "threads": args.threads})
        rows.append(["ART (per image)", art.get("success_rate", art.get("error")), art.get("queries", "-"), 0,
                     art.get("seconds", "-")])
    print(fmt_table(f"SimBA-DCT, step 0.2, freq_dims {args.simba_freq}, {ns} images, {args.simba_iters} "
                    "iterations (ours: max_queries = 2 x iterations)",
                    ["impl", "success rate", "queries", "audit queries", "seconds"], rows))

    if args.skip_throughput:
        return
    xb, yb = x[:100], y[:100]

    def raw_rate(seconds: float = 3.0) -> float:
        """Images/s of plain batched queries (measured next to each attack: the load drifts)."""
        bbr = make_bb()
        bbr.query(xb)
        t0, done = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            bbr.query(xb)
            done += len(xb)
        return done / (time.perf_counter() - t0)

    rows = []
    for name in ("square", "nes", "bandits", "signhunter", "simba"):
        raw = raw_rate()
        bb = make_bb()
        atk = ATTACKS[name](eps=0.02, max_queries=args.tp_queries)  # small eps: few stop, batches stay full
        t0 = time.perf_counter()
        atk.run(bb, xb, yb)
        secs = time.perf_counter() - t0
        q, a = bb.stats.queries, bb.stats.audit_queries
        rows.append([name, q, a, raw, q / secs, (q + a) / secs, q / secs / raw, (q + a) / secs / raw])
    print(fmt_table(f"Throughput at batch {len(xb)} (eps 0.02, {args.tp_queries} queries/image)",
                    ["attack", "queries", "audit queries", "raw images/s", "queries/s", "forwards/s",
                     "queries/s vs raw", "forwards/s vs raw"], rows))


if __name__ == "__main__":
    main()
