"""Targeted decision attacks: starting from uniform noise vs from a test image of the target class.

Usage: ``.venv/bin/python benchmarks/targeted_starts.py [--n 20] [--budget 1000] [--model CKPT] [--threads 1]``

The demo's SmallCNN MNIST-5k target seen through labels only; the first ``n`` correctly classified
test images (the split is class-interleaved, so 20 images hold 2 of each digit); a seeded random
target class per image (never the true one); minimum-norm mode (``eps=None``). "target-class start"
passes ``x_init=starts_of_class(test.x, test.y, target, exclude=attacked)``, what
``bbdefense attack --targeted`` does. Prints one Markdown table.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from _common import bench_args

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    args = bench_args(__doc__, threads=1, n=20, budget=1000, seed=0, extra=lambda ap: ap.add_argument(
        "--model", default=None, help="A SmallCNN MNIST checkpoint (default: train/reuse the demo target)."))

    from bbdefense.attacks import ATTACKS
    from bbdefense.data import load_dataset, make_splits
    from bbdefense.evaluation.attacks import first_correct, starts_of_class
    from bbdefense.experiments.demo import DEMO_ARCH, DEMO_DATASET, DEMO_TRAIN
    from bbdefense.models import BlackBox, load_checkpoint
    from bbdefense.training import train_target

    ckpt = args.model
    if ckpt is None:
        ckpt, _ = train_target(DEMO_ARCH, DEMO_DATASET, ROOT / ".cache" / "bench" / "target_smallcnn_mnist5k",
                               DEMO_TRAIN, reuse=True)
    module, meta = load_checkpoint(ckpt)
    module.eval()
    shape = tuple(meta["input_shape"])
    test = make_splits(load_dataset("mnist5k"), seed=0).test
    sel, _, _ = first_correct(BlackBox.from_module(module, input_shape=shape), test.x, test.y, args.n)
    x, y = test.x[sel], test.y[sel]
    g = torch.Generator().manual_seed(args.seed)
    target = (y + torch.randint(1, 10, (len(y),), generator=g)) % 10
    starts = starts_of_class(test.x, test.y, target, exclude=sel)
    print(f"{len(x)} images, digits {torch.bincount(y, minlength=10).tolist()}, {args.budget} label queries/image")
    print("| attack | start | success (image labelled as the target) | median distance of successes | queries |"
          " seconds |")
    print("|---|---|---|---|---|---|")
    for name, norm in (("hsja", "l2"), ("signflip", "linf")):
        for label, x_init in (("uniform noise", None), ("target-class image", starts)):
            bb = BlackBox.from_module(module, input_shape=shape, output="label")
            atk = ATTACKS[name](norm=norm, eps=None, max_queries=args.budget, seed=args.seed)
            t0 = time.perf_counter()
            kw = {} if x_init is None else {"x_init": x_init}
            res = atk.run(bb, x, y, target=target, **kw)
            secs = time.perf_counter() - t0
            with torch.no_grad():
                hit = module(res.x_adv).argmax(1) == target
            mn = res.extra["min_norm"]
            ok = hit & torch.isfinite(mn)
            med = float(mn[ok].median()) if ok.any() else float("nan")
            print(f"| {name} ({norm}) | {label} | {float(hit.float().mean()):.2f} | {med:.3f} ({norm}) | "
                  f"{int(bb.stats.queries):,} | {secs:.1f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
