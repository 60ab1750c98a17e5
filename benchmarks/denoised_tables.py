"""Denoised smoothing for black boxes at demo scale: the ZO-AE-DS Table 2 and the IRS-Net tables.

    .venv/bin/python benchmarks/denoised_tables.py [--out runs/denoised-tables] [--only table2|irs] [--threads 1]

Trains the MNIST-5k black boxes (cached under <out>/../cache), runs
:func:`bbdefense.experiments.papers.zo_ae_ds.run_table2` and
:func:`bbdefense.experiments.papers.irs_net.run_irs_tables`, prints the tables and renders the report.
Timings depend on the machine's load; figures (accuracies, queries) are seeded and reproducible.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bbdefense.data import load_dataset, make_splits
from bbdefense.models import load_checkpoint
from bbdefense.records import RunDir, render_report
from bbdefense.training import TrainConfig, train_target


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/denoised-tables")
    ap.add_argument("--only", choices=["table2", "irs", "table5"], default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n", type=int, default=500, help="Cohen CERTIFY n (estimation samples)")
    ap.add_argument("--n-test", type=int, default=None, help="default: each experiment's own (200)")
    ap.add_argument("--sigma", type=float, default=None, help="default: each experiment's own (0.75 Table 2, 0.5 IRS)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    cache = out.parent / "cache"
    run = RunDir(out, kind="benchmark", name="denoised smoothing tables", config=vars(args), seeds={"seed": 0})
    splits = make_splits(load_dataset("mnist5k"), seed=0)
    t0 = time.perf_counter()
    if args.only in (None, "table2"):
        from bbdefense.experiments.papers.zo_ae_ds import Table2Config, run_table2
        p, _ = train_target("lenet", "mnist5k", cache / "target_lenet_mnist5k", TrainConfig(epochs=6, seed=0),
                            reuse=True)
        target, _ = load_checkpoint(p)
        run_table2(target, splits, Table2Config(n=args.n, **({} if args.n_test is None else {'n_test': args.n_test}), **({} if args.sigma is None else {'sigma': args.sigma})), run, section="ZO-AE-DS")
    if args.only in (None, "irs"):
        from bbdefense.experiments.papers.irs_net import IRSTablesConfig, run_irs_tables
        run_irs_tables(splits, IRSTablesConfig(n=args.n, **({} if args.n_test is None else {'n_test': args.n_test}), **({} if args.sigma is None else {'sigma': args.sigma})), run, cache_dir=cache, section="IRS-Net")
    if args.only in (None, "table5"):
        from bbdefense.certified.zo_ae_ds.reconstruction import run_table5
        run_table5(splits, run, section="Reconstruction")
    run.set_metrics(seconds=round(time.perf_counter() - t0, 1))
    run.finish()
    render_report(run.path)
    for t in run.record.tables:
        print(f"\n## {t['title']}\n")
        print(" | ".join(t["columns"]))
        for r in t["rows"]:
            print(" | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r))
        print(f"\n{t.get('caption', '')}")


if __name__ == "__main__":
    main()
