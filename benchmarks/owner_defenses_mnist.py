"""The owner-defense "done when" figures on the MNIST target (issue 5): the full ``rfd`` and ``unig`` paper suites.

    .venv/bin/python benchmarks/owner_defenses_mnist.py [--out runs/owner-done-when] [--cache runs/owner/cache]
        [--only rfd|unig] [--threads 1]

A thin caller of ``bbdefense paper rfd`` and ``bbdefense paper unig`` (:mod:`bbdefense.experiments.papers.rfd`,
:mod:`~bbdefense.experiments.papers.unig`), each into ``<out>/<suite>``:

1. ``rfd``: layer analysis (gradient-norm ratios per layer, nu calibrated per layer to a 2% clean-accuracy drop
   on 500 defender images, 5 passes, robustness index); the undefended model, RFD at the chosen layer and RND
   under Square linf eps 0.3 at 1000 queries on the first 50 test images of the class-interleaved split
   (5 per digit; criterion fast_exp with k = 9 uncounted re-checks) and EOT-10 Square at 10 000 queries;
2. ``unig``: the undefended model and UniG (delta 0.2, lr 1) under the same protocol, Square also at 100 and 2500.

The target is the demo recipe (SmallCNN, MNIST-5k owner split, 6 epochs), trained into the cache when missing.
Rows stream (resumable); each report puts the paper's figures beside ours. Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse

import torch

from bbdefense.experiments.papers import run_paper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/owner-done-when")
    ap.add_argument("--cache", default="runs/owner/cache")
    ap.add_argument("--only", choices=["rfd", "unig"], default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name in ("rfd", "unig"):
        if args.only not in (None, name):
            continue
        run = run_paper(name, f"{args.out}/{name}", cache_dir=args.cache)
        for t in run.record.tables:
            print(f"\n{t['title']}\n" + " | ".join(map(str, t["columns"])))
            for r in t["rows"]:
                print(" | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r))
        print(f"\n{name}: wrote {run.path / 'report.md'} in {run.record.metrics.get('seconds')}s")


if __name__ == "__main__":
    main()
