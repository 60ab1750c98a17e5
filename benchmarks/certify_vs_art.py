"""Certified samples per second on the MNIST target: bbdefense ``Smooth.certify`` vs the raw batched
forward pass of the same model (goal >= 0.9 of it) and vs ART's ``PyTorchRandomizedSmoothing.certify``
at the same n0/n (goal >= 2.5x). ART runs in its own venv (.cache/art-venv, created on first use with
adversarial-robustness-toolbox + statsmodels, which ART's certify needs but does not declare).

    .venv/bin/python benchmarks/certify_vs_art.py [--images 20] [--n0 100] [--n 2000] [--threads 1] [--no-art]

A "sample" is one noisy image forwarded. Timings are wall clock, best of ``--repeats``; on a shared
machine they are noisy: re-run on a quiet one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
# E402 below: these imports need the sys.path entries set here (the script runs without installing).
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _art_certify import art_certify  # noqa: E402
from _common import bench_args  # noqa: E402
from bbdefense.certify import Smooth, make_noise  # noqa: E402
from bbdefense.data import load_dataset, make_splits  # noqa: E402
from bbdefense.models import BlackBox, load_checkpoint  # noqa: E402
from bbdefense.training import TrainConfig, train_target  # noqa: E402


def main() -> None:
    def flags(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--no-art", action="store_true")
        ap.add_argument("--no-onnx", action="store_true", help="skip the rows on the ONNX Runtime backend")
        ap.add_argument("--art-batch-sizes", default="32,1000",
                        help="ART certify batch sizes to time (32 is ART's default for certify)")

    args = bench_args(__doc__, threads=1, images=20, n0=100, n=2000, sigma=0.25, alpha=0.001, batch_size=1000,
                      repeats=2, extra=flags)
    ckpt = ROOT / ".cache" / "bench" / "smallcnn_mnist5k_gauss0.25"
    path, _ = train_target("smallcnn", "mnist5k", ckpt, TrainConfig(mode="gaussian", sigma=0.25, epochs=3, seed=0),
                          reuse=True)
    module, _ = load_checkpoint(path)
    module.eval()
    x = make_splits(load_dataset("mnist5k"), seed=0).test.x[:args.images]
    total = args.images * (args.n0 + args.n)
    bs = args.batch_size

    # raw batched forward pass of the same number of noisy images (noise drawn once, outside the timing)
    xb = (x[:1] + args.sigma * torch.randn((bs, *x.shape[1:]), generator=torch.Generator().manual_seed(0)))

    def time_raw(forward) -> float:  # type: ignore[no-untyped-def]  # forward: ART's or ours, no common type
        best = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            with torch.inference_mode():
                done = 0
                while done < total:
                    m = min(bs, total - done)
                    forward(xb[:m]).argmax(1)
                    done += m
            best = min(best, time.perf_counter() - t)
        return best

    def time_certify(bb: BlackBox) -> tuple[float, float]:
        sm = Smooth(bb, make_noise("gaussian", sigma=args.sigma))
        best, certs = float("inf"), []
        for _ in range(args.repeats):
            bb.reset_stats()
            t = time.perf_counter()
            certs = sm.certify(x, n0=args.n0, n=args.n, alpha=args.alpha, batch_size=bs, seed=0)
            best = min(best, time.perf_counter() - t)
        assert bb.stats.queries == total
        return best, float(np.mean([c.abstain for c in certs]))

    raw = time_raw(module)
    ours, abstain = time_certify(BlackBox.from_module(module, num_classes=10, input_shape=tuple(x.shape[1:])))
    rows = [("raw batched forward (same model)", raw, None), ("bbdefense Smooth.certify", ours, abstain)]
    if not args.no_onnx:
        # The same model exported to ONNX and served by onnxruntime: bbdefense's BlackBox runs it behind the same
        # query counter (ART's PyTorchRandomizedSmoothing needs a torch module, so it has no such row).
        from bbdefense.models import export_onnx
        from bbdefense.models.backends import OnnxBackend

        with tempfile.TemporaryDirectory() as tmp:
            ob = OnnxBackend(export_onnx(module, Path(tmp) / "model.onnx", tuple(x.shape[1:])), threads=args.threads)
            raw_onnx = time_raw(ob.forward)
            ours_onnx, abstain_o = time_certify(BlackBox(ob, num_classes=10, input_shape=tuple(x.shape[1:])))
        rows.append(("raw batched forward, ONNX Runtime", raw_onnx, None))
        rows.append(("bbdefense Smooth.certify, ONNX backend", ours_onnx, abstain_o))
    n_ours = len(rows)
    if not args.no_art:
        for abs_ in [int(b) for b in args.art_batch_sizes.split(",")]:
            art = art_certify(module, x, n0=args.n0, n=args.n, sigma=args.sigma, alpha=args.alpha, batch_size=abs_,
                              threads=args.threads)
            rows.append((f"ART PyTorchRandomizedSmoothing (batch {abs_})", art["seconds"], art["abstain"]))
    print(f"MNIST-5k SmallCNN (Gaussian-trained, sigma={args.sigma}), {args.images} images x (n0={args.n0} + "
          f"n={args.n}) = {total} noisy samples, batch {bs}, {args.threads} thread(s), best of {args.repeats}")
    print(f"{'method':42s} {'seconds':>9s} {'samples/s':>11s} {'vs raw':>7s} {'abstain':>8s}")
    for name, sec, ab in rows:
        print(f"{name:42s} {sec:9.2f} {total / sec:11.0f} {raw / sec:7.2f} {'-' if ab is None else f'{ab:.2f}':>8s}")
    for name, sec, _ in rows[n_ours:]:
        print(f"speed-up of ours (torch) over {name}: {sec / ours:.2f}x (goal >= 2.5)")
        if not args.no_onnx:
            print(f"speed-up of ours (ONNX backend) over {name}: {sec / ours_onnx:.2f}x")
    print(f"ours / raw forward: {raw / ours:.2f} (goal >= 0.9)")


if __name__ == "__main__":
    main()
