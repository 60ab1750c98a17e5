"""Benchmark: our score attacks vs IBM ART's (Square, SimBA) on the MNIST target, and the
throughput of every score attack against the raw batched forward of the model.

    .venv/bin/python benchmarks/attacks_vs_art.py [--n 100] [--budget 300] [--threads 1] [--skip-art]

ART 1.20.1 is installed by this script into its own venv ``.cache/art-venv`` (pinned by
constraints.txt; it shares our pinned torch through a ``.pth`` path to ``.venv``). The target is
the demo's SmallCNN on MNIST-5k (trained once, cached under ``.cache/bench``). Equal budgets:
Square gets the same number of iterations (ours spends 1 query per image per iteration, ART ~3);
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
CACHE = ROOT / ".cache"
ART_VENV = CACHE / "art-venv"
ART_VERSION = "1.20.1"


def ensure_art_venv() -> Path:
    py = ART_VENV / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import art"], capture_output=True).returncode == 0:
        return py
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(ART_VENV)], check=True)
    site = next((ART_VENV / "lib").glob("python*/site-packages"))
    ours = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    # our pinned torch/numpy and the editable bbdefense (addsitedir also runs that dir's .pth files)
    (site / "_bbdefense_venv.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), "--no-deps",
                    f"adversarial-robustness-toolbox=={ART_VERSION}", "six", "tqdm"], check=True)
    return py


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
    ap.add_argument("--budget", type=int, default=300, help="Square iterations (= our queries per image)")
    ap.add_argument("--simba-iters", type=int, default=200)
    ap.add_argument("--simba-n", type=int, default=None, help="images for SimBA (default --n)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--p-init", type=float, default=0.8, help="Square p_init for both (ART default = MNIST ref)")
    ap.add_argument("--tp-queries", type=int, default=200, help="queries per image in the throughput runs")
    ap.add_argument("--simba-freq", type=int, default=8, help="SimBA-DCT low-frequency block side, both impls")
    ap.add_argument("--skip-art", action="store_true")
    ap.add_argument("--skip-square", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from bbdefense.attacks import ATTACKS
    from bbdefense.attacks.evaluation import first_correct
    from bbdefense.data import load_dataset, make_splits
    from bbdefense.models import BlackBox, load_checkpoint

    ckpt = target()
    module, meta = load_checkpoint(ckpt)
    shape = tuple(meta["input_shape"])
    test = make_splits(load_dataset("mnist5k"), seed=0).test
    bb0 = BlackBox.from_module(module, input_shape=shape)
    sel, _, _ = first_correct(bb0, test.x, test.y, args.n)
    x, y = test.x[sel], test.y[sel]
    data = CACHE / "bench" / "images.npz"
    np.savez(data, x=x.numpy(), y=y.numpy())
    py = None if args.skip_art else ensure_art_venv()
    print(f"target {ckpt.name}, {len(x)} correctly classified MNIST-5k test images, threads={args.threads}, "
          f"torch {torch.__version__}; shared machine: timings are noisy")

    rows = []
    for eps in () if args.skip_square else (0.1, 0.15):
        bb = BlackBox.from_module(module, input_shape=shape, log_queries=True)
        t0 = time.perf_counter()
        res = ATTACKS["square"](eps=eps, max_queries=args.budget, p_init=args.p_init).run(bb, x, y)
        secs = time.perf_counter() - t0
        iters = bb.stats.calls  # model calls (ours: one batched call per iteration)
        rows.append(["ours", eps, res.success_rate, bb.stats.queries, bb.stats.queries / args.budget / len(x),
                     iters / args.budget, secs])
        if py is not None:
            art = run_art(py, {"attack": "square", "model": str(ckpt), "data": str(data), "eps": eps,
                               "iters": args.budget, "p_init": args.p_init, "threads": args.threads})
            if "error" in art:
                rows.append(["ART", eps, art["error"], "-", "-", "-", "-"])
            else:
                rows.append(["ART", eps, art["success_rate"], art["queries"], art["queries"] / args.budget / len(x),
                             art["calls"] / args.budget, art["seconds"]])
    print(fmt_table(f"Square linf, {len(x)} images, {args.budget} iterations, p_init {args.p_init}",
                    ["impl", "eps", "success rate", "queries", "queries / (image x iteration)",
                     "model calls / iteration", "seconds"], rows))

    ns = args.simba_n or len(x)
    rows = []
    bb = BlackBox.from_module(module, input_shape=shape)
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
        bbr = BlackBox.from_module(module, input_shape=shape)
        bbr.query(xb)
        t0, done = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            bbr.query(xb)
            done += len(xb)
        return done / (time.perf_counter() - t0)

    rows = []
    for name in ("square", "nes", "bandits", "signhunter", "simba"):
        raw = raw_rate()
        bb = BlackBox.from_module(module, input_shape=shape)
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
