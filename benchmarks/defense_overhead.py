"""Latency per query batch of each owner-side defense vs the undefended model (issue 5 targets:
RFD <= 1.1x, UniG <= 2x; AAA, RND, anti-adversary and mixup inference reported).

    .venv/bin/python benchmarks/defense_overhead.py [--batch 100] [--repeats 20] [--threads 1] [--target CKPT]

Uses the MNIST SmallCNN target (``--target``; a freshly initialised SmallCNN when absent: latency
does not depend on the weights). Median wall time of ``--repeats`` timed calls after 3 warm-ups,
under ``torch.inference_mode`` as a BlackBox runs them. On a shared machine the numbers are noisy;
re-run on a quiet one.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch


def _paired_ms(base, fn, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Median ms of ``base`` and ``fn``, timed alternately (so load drift on a shared machine hits both)."""
    tb, tf = [], []
    with torch.inference_mode():
        for _ in range(2):
            base(x)
            fn(x)
        for _ in range(repeats):
            t = time.perf_counter()
            base(x)
            tb.append(time.perf_counter() - t)
            t = time.perf_counter()
            fn(x)
            tf.append(time.perf_counter() - t)
    return 1000 * statistics.median(tb), 1000 * statistics.median(tf)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--target", default="runs/owner/target")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from bbdefense.defenses import (
        AAA,
        AntiAdversary,
        MixupInference,
        RandomizedFeatureDefense,
        RandomNoiseDefense,
        UniG,
    )
    from bbdefense.models import load_checkpoint
    from bbdefense.models.zoo import build_model

    if Path(args.target + ".safetensors").is_file():
        model, _ = load_checkpoint(args.target)
    else:
        model = build_model("smallcnn", num_classes=10, in_channels=1, image_size=28).eval()
    x = torch.rand(args.batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    ref = (torch.rand(120, 1, 28, 28), torch.arange(120) % 10)
    defenses = {
        "rfd[stage2]": (RandomizedFeatureDefense(model, layers=["stage2"], nu=0.5), 1.1),
        "rfd[penultimate]": (RandomizedFeatureDefense(model, layers=["penultimate"], nu=0.5), 1.1),
        "rnd": (RandomNoiseDefense(model, nu=0.05), None),
        "unig": (UniG(model), 2.0),
        "unig (combine k=5)": (UniG(model, reference=ref), 2.0),
        "aaa": (AAA(model), None),
        "anti_adversary": (AntiAdversary(model), None),
        "mixup_inference": (MixupInference(model, reference=ref, n_samples=30), None),
    }
    print(f"batch {args.batch}, {args.threads} thread(s), median of {args.repeats} calls, each timed alternately "
          "with the undefended model")
    print(f"{'model':22s} {'ms/batch':>10s} {'undefended':>11s} {'x undefended':>13s} {'target':>8s} {'ok':>4s}")
    for name, (d, limit) in defenses.items():
        base, ms = _paired_ms(model, d, x, args.repeats)
        ratio = ms / base
        ok = "" if limit is None else ("yes" if ratio <= limit else "NO")
        bound = "" if limit is None else f"<= {limit}x"
        print(f"{name:22s} {ms:10.2f} {base:11.2f} {ratio:13.2f} {bound:>8s} {ok:>4s}")


if __name__ == "__main__":
    main()
