"""DUCD on the MNIST-5k target: the figures quoted in docs/ducd.md.

    .venv/bin/python benchmarks/ducd_mnist.py [--part tables|sweep|certify|all] [--budget 10000] [--epochs 12]
        [--threads 2] [--out runs/bench_ducd]

* ``tables``  (Tables I-II): surrogate accuracy, ratio and fidelity for the three data settings (same split
  ``owner_train``, disjoint ``defender``, shifted ``defender_shifted``) and the three APIs (logits, probs, label).
* ``sweep``   (Fig. 3): accuracy vs query budget on the disjoint split.
* ``certify`` (Table IV): DUCD vs WUCD vs Cohen RS certified accuracy (l1 Laplace, l2 and linf Gaussian), envelope
  over sigma, robust score; pA-R curves (Fig. 5).

Everything is written to a run directory (record.json, rows/*.jsonl, report.md); tables are printed as they come.
The target is the demo's SmallCNN (trained once, cached under ``.cache/ducd``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bbdefense.data import load_dataset, make_splits
from bbdefense.certified.ducd import DistillConfig, build_surrogate, budget_sweep, distill, evaluate_surrogate
from bbdefense.experiments.papers.ducd import DUCDConfig, run_ducd
from bbdefense.experiments.demo import DEMO_ARCH, DEMO_DATASET, DEMO_TRAIN
from bbdefense.models import BlackBox, load_checkpoint
from bbdefense.records import RunDir, render_report, table
from bbdefense.training import TrainConfig, train_target

CACHE = Path(".cache/ducd")


def _print_table(title: str, cols: list[str], rows: list[list[object]]) -> None:
    print(f"\n{title}\n" + " | ".join(cols), flush=True)
    for r in rows:
        print(" | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r), flush=True)


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
    t0 = time.perf_counter()
    path, meta = train_target(DEMO_ARCH, DEMO_DATASET, CACHE / f"target_{DEMO_ARCH}", DEMO_TRAIN, reuse=True)
    module, _ = load_checkpoint(path)
    ds = load_dataset(DEMO_DATASET)
    sp = make_splits(ds, seed=0)
    shape = tuple(meta["input_shape"])
    run = RunDir(a.out, kind="bench-ducd", config=vars(a), resume=False)
    print(f"target {DEMO_ARCH} test accuracy {meta['metrics']['test_accuracy']:.4f} ({time.perf_counter() - t0:.0f}s)",
          flush=True)

    def surrogate() -> torch.nn.Module:
        return build_surrogate(a.surrogate, num_classes=10, input_shape=shape, mean=ds.mean, std=ds.std, seed=0)

    if a.part in ("tables", "all"):
        rows = []
        for split, output in [("owner_train", "logits"), ("defender", "logits"), ("defender_shifted", "logits"),
                              ("defender", "probs"), ("defender", "label")]:
            bb = BlackBox.from_module(module, input_shape=shape, output=output, budget=a.budget)  # type: ignore[arg-type]
            sur = surrogate()
            t = time.perf_counter()
            res, ts = distill(bb, sur, sp[split], DistillConfig(budget=a.budget, epochs=a.epochs))
            m = evaluate_surrogate(bb, sur, sp.test, queries=len(ts))
            rows.append([split, output, res.loss, m.target_accuracy, m.surrogate_accuracy, 100 * m.ratio, m.fidelity,
                         bb.stats.queries, round(time.perf_counter() - t, 1)])
            _print_table("Tables I-II (so far)", ["split", "API", "loss", "target", "surrogate", "ratio %", "fidelity",
                                                  "queries", "seconds"], rows[-1:])
        cols = ["split", "API", "loss", "target acc", "surrogate acc", "ratio %", "fidelity", "queries", "seconds"]
        run.add_table(table("Tables I-II: surrogate vs target", cols, rows, f"budget {a.budget}, {a.epochs} epochs"))
    if a.part in ("sweep", "all"):
        budgets = [int(b) for b in a.sweep.split(",")]
        bb = BlackBox.from_module(module, input_shape=shape, budget=max(budgets))
        srows = budget_sweep(bb, surrogate, sp.defender, sp.test, budgets, DistillConfig(epochs=a.epochs))
        rows = [[r["budget"], r["queries"], r["surrogate_accuracy"], 100 * r["ratio"], r["fidelity"]] for r in srows]
        _print_table("Fig. 3: accuracy vs budget (defender split)", ["budget", "queries", "surrogate", "ratio %",
                                                                     "fidelity"], rows)
        run.add_table(table("Fig. 3: accuracy vs query budget", ["budget", "queries", "surrogate acc", "ratio %",
                                                                 "fidelity"], rows))
    models: dict = {}
    if a.part in ("certify", "attacks", "all"):
        sig = tuple(float(s) for s in a.sigmas.split(","))
        bb = BlackBox.from_module(module, input_shape=shape, budget=a.budget)

        def rs_model(sigma: float) -> torch.nn.Module:
            cfg = TrainConfig(mode="gaussian", sigma=sigma, epochs=DEMO_TRAIN.epochs, seed=0)
            p, _ = train_target(DEMO_ARCH, DEMO_DATASET, CACHE / f"rs_{DEMO_ARCH}_sigma{sigma:g}", cfg, reuse=True)
            return load_checkpoint(p)[0]

        cfg = DUCDConfig(sigmas=sig, norms=tuple(a.norms.split(",")), n_images=a.n_images, n0=100, n=a.n,
                         finetune_epochs=3)
        s = run_ducd(run, bb, surrogate(), sp.defender, sp.test, cfg,
                     distill_cfg=DistillConfig(budget=a.budget, epochs=a.epochs),
                     target_module=None if a.no_wucd else module,
                     owner_train=sp.owner_train, rs_model=None if a.no_rs else rs_model, section="Table IV",
                     models=models)
        for t in run.record.tables:
            if t["title"].startswith("Certified accuracy"):
                _print_table(t["title"], t["columns"], t["rows"])
        print(f"\ntarget queries {s['target_queries_total']} (distillation only); ratio {100 * s['ratio']:.2f}%",
              flush=True)
    if a.part in ("attacks", "all"):
        _attacks(run, models, sp.test, shape, a)
    run.finish()
    render_report(run.path)
    print(f"\nwrote {run.path / 'report.md'} in {time.perf_counter() - t0:.0f}s (machine shared: timings are noisy)",
          flush=True)


def _attacks(run: RunDir, models: dict, test, shape: tuple, a: argparse.Namespace) -> None:
    """Fig. 6-7: ASR vs eps of APGD (white-box on the base), Square (scores on the base, a transfer attack) and
    HSJA (label-only on the smoothed classifier itself)."""
    from bbdefense.certify import make_noise
    from bbdefense.certified.ducd.attack import attack_success_curve
    from bbdefense.certified.ducd.defense import CertifiedClassifier

    x, y = test.x[:a.attack_images], test.y[:a.attack_images]
    rows = []
    for (meth, nz, s), base in sorted(models.items(), key=lambda kv: str(kv[0])):
        if nz != "gaussian":
            continue
        clf = CertifiedClassifier(BlackBox.from_module(base, input_shape=shape), make_noise(nz, sigma=s))
        for atk, params, eps in (("apgd", {"steps": 20}, [0.5, 1.0, 2.0, 3.0]),
                                 ("square", {"max_queries": 1000}, [0.5, 1.0, 2.0, 3.0]),
                                 ("hsja", {"max_queries": a.hsja_queries}, [0.5, 1.0, 2.0, 3.0])):
            if atk not in a.attacks.split(","):
                continue
            for r in attack_success_curve(clf, base, atk, x, y, eps, norm="l2", n_predict=50, attack_params=params):
                rows.append([meth, f"{nz} {s:g}", r["attack"], r["eps"], r["asr"], r["n_correct"], r["queries"],
                             r["mode"]])
                _print_table("ASR (so far)", ["method", "noise", "attack", "eps", "ASR", "n", "queries", "mode"],
                             rows[-1:])
    run.add_table(table("Fig. 6-7: attack success rate vs l2 eps on the certified classifier",
                        ["method", "noise", "attack", "eps l2", "ASR", "n correct", "queries", "mode"], rows,
                        "smoothed PREDICT with n=50, alpha=0.001; abstention counts as attack success"))


if __name__ == "__main__":
    main()
