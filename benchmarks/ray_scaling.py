"""Certification throughput on Ray, 1 vs 2 workers (one single-threaded torch per worker), against one local
process; and Ray's per-chunk overhead at the default chunk size (docs/scale-out.md quotes this table).

    .venv/bin/python benchmarks/ray_scaling.py [--images 40] [--n0 100] [--n 2000] [--chunk 10]
                                               [--batch-size 500] [--workers 1,2] [--address ADDR]

The model is a SmallCNN trained one epoch on MNIST-5k (cached in .cache/bench/ray_scaling), certified as a
checkpoint: its bytes travel to the workers as in a real run. A "sample" is one noisy image forwarded.
rows/s and samples/s count from the first chunk submitted to the last row back (the actors' start-up, a
model load per worker, is reported apart); overhead = 1 - (compute inside the actors) / (workers x wall):
Ray's bookkeeping, transfers and the idle tail. Goals (issue 16): 2 workers >= 1.6x one worker on this
2-core machine, overhead < 5%. Timings are wall clock; on a shared machine re-run on a quiet one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# E402 below: these imports need the sys.path entry set here (the script runs without installing).
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

from bbdefense.certify import Smooth, make_noise  # noqa: E402
from bbdefense.cluster import RunStats, connect  # noqa: E402
from bbdefense.data import load_dataset, make_splits  # noqa: E402
from bbdefense.evaluation.certification import certify_rows  # noqa: E402
from bbdefense.evaluation.distributed import DEFAULT_CHUNK, SmoothSpec, certify_rows_ray  # noqa: E402
from bbdefense.models import load_blackbox  # noqa: E402
from bbdefense.training import TrainConfig, train_target  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--n0", type=int, default=100)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--chunk", type=int, default=DEFAULT_CHUNK)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--address", default=None, help="a Ray cluster (default: a local Ray on this machine)")
    ap.add_argument("--no-local", action="store_true", help="skip the one-process baseline")
    args = ap.parse_args()

    torch.set_num_threads(1)
    path, _ = train_target("smallcnn", "mnist5k", ROOT / ".cache" / "bench" / "ray_scaling" / "smallcnn",
                           TrainConfig(epochs=1, seed=0), reuse=True)
    spec = str(path)
    test = make_splits(load_dataset("mnist5k"), seed=0).test
    idx = list(range(args.images))
    x, y = test.x[idx], test.y[idx]
    bb = load_blackbox(spec, backend="torch")  # eager, as its Ray workers (SmoothSpec's default backend)
    sm = Smooth(bb, make_noise("gaussian", sigma=0.25), norms=["l2"])
    kw = {"n0": args.n0, "n": args.n, "alpha": 0.001, "batch_size": args.batch_size, "seed": 0}
    samples = args.images * (args.n0 + args.n)
    results: list[tuple[str, int, float, RunStats | None]] = []
    local_rows = None
    if not args.no_local:
        t0 = time.perf_counter()
        local_rows = certify_rows(sm, x, y, idx, chunk=args.chunk, **kw).rows
        results.append(("one process (no Ray)", 1, time.perf_counter() - t0, None))
    t0 = time.perf_counter()
    ray = connect(args.address)
    connect_s = time.perf_counter() - t0
    for k in (int(w) for w in args.workers.split(",")):
        stats: list[RunStats] = []
        res = certify_rows_ray(SmoothSpec.of(sm, spec), x, y, idx, chunk=args.chunk, workers=k, cpus_per_worker=1,
                               gpus_per_worker=0, stats=stats, **kw)
        if local_rows is not None:
            strip = [{a: b for a, b in r.items() if a != "seconds"} for r in res.rows]
            assert strip == [{a: b for a, b in r.items() if a != "seconds"} for r in local_rows], "rows differ"
        results.append((f"Ray, {k} worker{'s' if k > 1 else ''}", k, stats[0].wall_s, stats[0]))
    ray.shutdown()

    base = next((r[2] for r in results if r[3] is not None and r[1] == 1), None)
    print(f"# ray_scaling: {args.images} MNIST-5k images, SmallCNN checkpoint, n0={args.n0} n={args.n} "
          f"batch {args.batch_size}, chunk {args.chunk} images ({-(-args.images // args.chunk)} chunks), "
          f"1 torch thread per worker; Ray {ray.__version__}, {os.cpu_count()} cores; ray.init {connect_s:.1f}s")
    print("| setting | workers | rows/s | noisy samples/s | speedup vs 1 Ray worker | actor start-up s | "
          "overhead | per-chunk overhead ms |")
    print("|---|---|---|---|---|---|---|---|")
    for name, k, secs, st in results:
        speed = f"{base / secs:.2f}x" if base and st is not None else "-"
        if st is None:
            extra = "- | - | -"
        else:
            per_chunk = 1000 * (st.workers * st.wall_s - st.compute_s) / max(st.chunks, 1)
            extra = f"{st.startup_s:.1f} | {100 * st.overhead:.1f}% | {per_chunk:.0f}"
        print(f"| {name} | {k} | {args.images / secs:.2f} | {samples / secs:.0f} | {speed} | {extra} |")
    ok = [st for _, k, _, st in results if st is not None and k == 2]
    if base and ok:
        two = next(r[2] for r in results if r[3] is ok[0])
        print(f"goals: speedup {base / two:.2f}x (>= 1.6x: {base / two >= 1.6}); overhead at chunk {args.chunk}: "
              f"{100 * ok[0].overhead:.1f}% (< 5%: {ok[0].overhead < 0.05})")


if __name__ == "__main__":
    main()
