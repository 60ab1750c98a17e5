"""DUCD on the MNIST-5k target: the figures quoted in docs/ducd.md, the full ``ducd`` paper suite.

    .venv/bin/python benchmarks/ducd_mnist.py [--part tables|sweep|certify|attacks|all] [--budget 5000]
        [--epochs 10] [--threads 1] [--out runs/bench_ducd]

A thin caller of the ``ducd`` paper suite (``bbdefense paper ducd`` runs all parts at these defaults;
:mod:`bbdefense.experiments.papers.ducd_suite`), with each knob of the documented runs:

* ``tables``  (Tables I-II): surrogate accuracy, ratio and fidelity for three data settings and three APIs;
* ``sweep``   (Fig. 3): accuracy vs query budget on the disjoint split;
* ``certify`` (Table IV): DUCD vs WUCD vs Cohen RS certified accuracy, envelope over sigma, robust score;
* ``attacks`` (Fig. 6-7): ASR vs l2 eps of APGD, Square and HSJA on the smoothed classifiers (runs certify).

Everything is written to a resumable run directory (record.json, rows/*.jsonl, report.md with the paper's
figures beside ours). The target is the demo's SmallCNN (trained once, cached under ``.cache/ducd``).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import torch

from bbdefense.experiments.papers import run_paper
from bbdefense.experiments.papers.ducd_suite import DUCDScale, run_scaled
from bbdefense.experiments.papers.settings import CertifySettings

CACHE = Path(".cache/ducd")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", default="all", choices=["tables", "sweep", "certify", "attacks", "all"])
    ap.add_argument("--budget", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--surrogate", default="lenet")
    ap.add_argument("--sweep", default="500,1000,2000,5000")
    ap.add_argument("--sigmas", default="0.25,0.5")
    ap.add_argument("--norms", default="l1,l2,linf")
    ap.add_argument("--no-rs", action="store_true", help="skip Cohen RS (trains a Gaussian target per sigma)")
    ap.add_argument("--no-wucd", action="store_true", help="skip WUCD (white-box fine-tuning of the target)")
    ap.add_argument("--n-images", type=int, default=100)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--attack-images", type=int, default=20)
    ap.add_argument("--attacks", default="apgd,square,hsja", help="Fig. 6-7 attacks (apgd, square, hsja)")
    ap.add_argument("--hsja-queries", type=int, default=500,
                    help="HSJA label queries per image (each a PREDICT of 50 noisy base queries; one min-norm run)")
    ap.add_argument("--out", default="runs/bench_ducd")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    parts = ("tables", "sweep", "certify", "attacks") if a.part == "all" else (a.part,)
    s = DUCDScale(parts=parts, budget=a.budget, epochs=a.epochs, surrogate=a.surrogate,
                  sweep=tuple(int(b) for b in a.sweep.split(",")), sigmas=tuple(float(x) for x in a.sigmas.split(",")),
                  norms=tuple(a.norms.split(",")), rs=not a.no_rs, wucd=not a.no_wucd, n_images=a.n_images,
                  certify=CertifySettings(n0=100, n=a.n),
                  attack_images=a.attack_images, attacks=tuple(a.attacks.split(",")), hsja_queries=a.hsja_queries)
    run = run_paper("ducd", a.out, cache_dir=CACHE, config={"scale": asdict(s)},
                    runner=lambda run, seed, cache_dir, on_event: run_scaled(run, s, seed=seed, cache_dir=cache_dir,
                                                                             on_event=on_event))
    for t in run.record.tables:
        print(f"\n{t['title']}\n" + " | ".join(map(str, t["columns"])))
        for r in t["rows"]:
            print(" | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r))
    m = run.record.metrics
    print(f"\nwrote {run.path / 'report.md'} in {m.get('seconds')}s (machine shared: timings are noisy)")


if __name__ == "__main__":
    main()
