"""Denoised smoothing for black boxes at demo scale: the ZO-AE-DS and IRS-Net paper suites, full scale.

    .venv/bin/python benchmarks/denoised_tables.py [--out runs/denoised-tables] [--only table2|irs|table5]
        [--threads 1] [--n 500] [--n-test N] [--sigma S]

A thin caller of the paper suites (``bbdefense paper zo-ae-ds`` and ``bbdefense paper irs-net`` run the
same code at their documented scale; use those): ``table2`` and ``table5`` run the ``zo-ae-ds`` suite
(:func:`bbdefense.experiments.papers.zo_ae_ds_suite.run_scaled`) into ``<out>/zo-ae-ds``, ``irs`` the
``irs-net`` suite into ``<out>/irs-net``; trained black boxes are cached under ``<out>/../cache``. Each run
directory resumes and its report puts the paper's figures beside ours. Timings depend on the machine's
load; figures (accuracies, queries) are seeded and reproducible.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from bbdefense.experiments.papers import irs_net_suite, run_paper, zo_ae_ds_suite


def _scaled(cfg: Any, over: dict[str, Any]) -> Any:
    """``cfg`` with the command line's settings (``n`` is CERTIFY's, in ``cfg.certify``)."""
    rest = {k: v for k, v in over.items() if k != "n"}
    return replace(cfg, certify=replace(cfg.certify, n=over["n"]), **rest)


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
    over: dict[str, Any] = {"n": args.n, **({} if args.n_test is None else {"n_test": args.n_test}),
                            **({} if args.sigma is None else {"sigma": args.sigma})}
    runs = []
    if args.only in (None, "table2", "table5"):
        t2, t5 = args.only in (None, "table2"), args.only in (None, "table5")
        cfg = _scaled(zo_ae_ds_suite.full_config(), over)
        runs.append(run_paper("zo-ae-ds", out / "zo-ae-ds", cache_dir=cache,
                              config={"table2": t2, "table5": t5, **over},
                              runner=lambda run, seed, cache_dir, on_event: zo_ae_ds_suite.run_scaled(
                                  run, cfg, table2=t2, table5=t5, cache_dir=cache_dir, on_event=on_event)))
    if args.only in (None, "irs"):
        icfg = _scaled(irs_net_suite.full_config(), over)
        runs.append(run_paper("irs-net", out / "irs-net", cache_dir=cache, config=over,
                              runner=lambda run, seed, cache_dir, on_event: irs_net_suite.run_scaled(
                                  run, icfg, cache_dir=cache_dir, on_event=on_event)))
    for run in runs:
        for t in run.record.tables:
            print(f"\n## {t['title']}\n")
            print(" | ".join(t["columns"]))
            for r in t["rows"]:
                print(" | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r))
            print(f"\n{t.get('caption', '')}")
        print(f"\nwrote {run.path / 'report.md'}")


if __name__ == "__main__":
    main()
