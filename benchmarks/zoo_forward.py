"""Forward cost of every model-zoo architecture on CPU: parameters and milliseconds per image.

Usage: ``.venv/bin/python benchmarks/zoo_forward.py [--threads 2] [--batch 32] [--reps 3] [--size 32]``

Classifiers and denoisers run on ``(batch, 3, size, size)``; each autoencoder on its own input size.
Each entry is timed as the best of ``reps`` forwards (after one warm-up) in eval mode under
``torch.inference_mode``. Prints a Markdown table. Numbers depend on the machine and its load.
"""

from __future__ import annotations

import time

import torch

from _common import bench_args
from bbdefense.models.zoo import MODELS, build_model

AE_INPUT = {"cifar_ae_192": (3, 32), "mnist_ae_192": (1, 28), "stl_ae_576": (3, 96)}


def main() -> None:
    args = bench_args(__doc__, threads=2, batch=32, reps=3, size=32, extra=lambda ap: ap.add_argument(
        "--only", nargs="*", default=None, help="architectures to time (default: all)"))
    print(f"threads={args.threads} batch={args.batch} reps={args.reps} torch={torch.__version__}\n")
    print("| architecture | kind | input | parameters | ms / image |")
    print("|---|---|---|---:|---:|")
    for name in args.only or list(MODELS):
        kind = MODELS[name].kind
        c, s = AE_INPUT.get(name, (3, args.size))
        torch.manual_seed(0)
        if kind == "classifier":
            m = build_model(name, in_channels=c, image_size=s)
        else:
            m = build_model(name, in_channels=c) if kind == "denoiser" else build_model(name)
        m.eval()
        x = torch.rand(args.batch, c, s, s, generator=torch.Generator().manual_seed(0))
        best = float("inf")
        with torch.inference_mode():
            m(x)
            for _ in range(args.reps):
                t = time.perf_counter()
                m(x)
                best = min(best, time.perf_counter() - t)
        n = sum(p.numel() for p in m.parameters())
        print(f"| {name} | {kind} | {c}x{s}x{s} | {n:,} | {1000 * best / args.batch:.2f} |", flush=True)


if __name__ == "__main__":
    main()
