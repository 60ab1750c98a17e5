"""Suite ``ducd``: DUCD (Li et al., arXiv 2408.10647) against the demo target on MNIST-5k.

Parts (full = what ``benchmarks/ducd_mnist.py`` ran, docs/ducd.md):

* ``tables`` (Tables I-II): surrogate vs target for three data settings (same split, disjoint
  defender split, shifted defender split) and three APIs (logits, probs, label);
* ``sweep`` (Fig. 3): surrogate accuracy vs query budget on the disjoint split;
* ``certify`` (Table IV, Fig. 5): DUCD vs WUCD vs Cohen RS certified accuracy (l1 Laplace, l2 and
  linf Gaussian), envelope over sigma, robust score; :func:`.ducd.run_ducd`;
* ``attacks`` (Fig. 6-7): ASR vs l2 eps of APGD, Square and HSJA on the smoothed classifiers.

Quick: only ``certify``, with 2000 queries, 10 distillation epochs, sigma 0.5, l1 and l2, 10 images,
n = 200, RS trained for 2 epochs. Every part streams its rows (a rerun skips what is done).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ...events import EventCallback, emit
from ...records import RunDir, read_rows, table
from .base import PaperFigure, catalog_suite
from .settings import CertifiedTable, CertifySettings

if TYPE_CHECKING:
    from ...evaluation.distributed import RayOptions


@dataclass(frozen=True)
class DUCDScale(CertifiedTable):
    """The budget of the suite (defaults: the full run of docs/ducd.md); ``certify``: Cohen's settings of
    Table IV, as every certifying table declares them (``n0``/``n``/``alpha`` read it)."""

    parts: tuple[str, ...] = ("tables", "sweep", "certify", "attacks")
    budget: int = 5000
    epochs: int = 10
    surrogate: str = "lenet"
    sweep: tuple[int, ...] = (500, 1000, 2000, 5000)
    sigmas: tuple[float, ...] = (0.25, 0.5)
    norms: tuple[str, ...] = ("l1", "l2", "linf")
    rs: bool = True
    rs_epochs: int | None = None  # None: the demo recipe's epochs
    wucd: bool = True
    n_images: int = 100
    certify: CertifySettings = field(default_factory=lambda: CertifySettings(n0=100, n=500))
    finetune_epochs: int = 3
    attack_images: int = 20
    attacks: tuple[str, ...] = ("apgd", "square", "hsja")
    hsja_queries: int = 500
    method: str = "cohen"  # certification: cohen (fixed n) | sequential (decide Table IV's radii, at most n samples)


FULL = DUCDScale()
QUICK = DUCDScale(parts=("certify",), budget=2000, epochs=10, sigmas=(0.5,), norms=("l1", "l2"), rs_epochs=2,
                  n_images=10, certify=CertifySettings(n0=50, n=200), finetune_epochs=1)

_T2 = "MNIST, ResNet-18 target and ResNet-18 surrogate, 2M queries"
_T4 = ("CIFAR-10 (500 random test images), Monte Carlo n=4000, sigma {0.25, 0.5, 0.75, 1.0}, 20M queries; "
       "score over radii 0.25..3.0")
#: Table IV rows (CIFAR-10): (norm, method) -> certified accuracy % at r = 0.25, 0.5, 1.0, 2.0, and the score
TABLE4: dict[tuple[str, str], tuple[float, float, float, float, float]] = {
    ("l1", "RS"): (72.93, 60.47, 48.86, 30.77, 1.103), ("l1", "WUCD"): (77.37, 65.06, 48.93, 39.90, 1.179),
    ("l1", "DUCD"): (76.68, 65.33, 49.50, 33.74, 1.161),
    ("l2", "RS"): (75.41, 65.20, 45.40, 33.52, 1.144), ("l2", "WUCD"): (77.52, 64.94, 49.39, 34.10, 1.159),
    ("l2", "DUCD"): (76.00, 64.28, 49.15, 33.20, 1.162),
}


def _figures() -> tuple[PaperFigure, ...]:
    figs = [PaperFigure("TABLE II", "Resnet-18", "target acc", 99.58, _T2, "target_accuracy"),
            PaperFigure("TABLE II", "Resnet-18", "surrogate acc", 99.57, _T2, "surrogate_accuracy"),
            PaperFigure("TABLE II", "Resnet-18", "ratio", 99.99, _T2, "ratio")]
    for (norm, meth), vals in TABLE4.items():
        for r, v in zip((0.25, 0.5, 1.0, 2.0), vals[:4], strict=True):
            figs.append(PaperFigure("TABLE IV", meth, f"{norm} CA r={r:g}", v, _T4, f"{meth}.{norm}.{r:g}"))
        figs.append(PaperFigure("TABLE IV", meth, f"{norm} robust score", vals[4], _T4, f"{meth}.{norm}.score",
                                unit="score"))
    return tuple(figs)


def _surrogate_tables(run: RunDir, module: torch.nn.Module, sp: Any, shape: tuple[int, int, int], ds: Any,
                      s: DUCDScale, new_surrogate: Any, on_event: EventCallback | None) -> None:
    """Tables I-II: one distillation per (split, API); rows streamed to ``rows/ducd_surrogates.jsonl``."""
    import time

    from ...certified.ducd import DistillConfig, distill, evaluate_surrogate
    from ...models import BlackBox

    w = run.rows("ducd_surrogates", key="key")
    for split, output in [("owner_train", "logits"), ("defender", "logits"), ("defender_shifted", "logits"),
                          ("defender", "probs"), ("defender", "label")]:
        if f"{split}|{output}" in w.done:
            continue
        emit(on_event, "info", "ducd", message=f"distilling on {split} through the {output} API")
        bb = BlackBox.from_module(module, input_shape=shape, output=output, budget=s.budget)
        sur = new_surrogate()
        t = time.perf_counter()
        res, ts = distill(bb, sur, sp[split], DistillConfig(budget=s.budget, epochs=s.epochs), on_event=on_event)
        m = evaluate_surrogate(bb, sur, sp.test, queries=len(ts))
        w.write({"key": f"{split}|{output}", "split": split, "api": output, "loss": res.loss,
                 "target": m.target_accuracy, "surrogate": m.surrogate_accuracy,
                 "ratio": None if m.ratio is None else 100 * m.ratio, "fidelity": m.fidelity,
                 "queries": bb.stats.queries, "seconds": round(time.perf_counter() - t, 1)})
    w.close()
    rows = [[r["split"], r["api"], r["loss"], r["target"], r["surrogate"], r["ratio"], r["fidelity"], r["queries"],
             r["seconds"]] for r in read_rows(run.path / "rows" / "ducd_surrogates.jsonl")]
    run.add_table({**table("Tables I-II: surrogate vs target", ["split", "API", "loss", "target acc", "surrogate acc",
                                                                "ratio %", "fidelity", "queries", "seconds"], rows,
                           f"budget {s.budget}, {s.epochs} epochs"), "section": "DUCD Tables I-II"})


def _sweep(run: RunDir, module: torch.nn.Module, sp: Any, shape: tuple[int, int, int], s: DUCDScale,
           new_surrogate: Any) -> None:
    """Fig. 3: accuracy vs query budget (the whole sweep is one step: skipped when its rows exist)."""
    from ...certified.ducd import DistillConfig, budget_sweep
    from ...models import BlackBox

    w = run.rows("ducd_sweep", key="budget")
    if not all(b in w.done for b in s.sweep):
        bb = BlackBox.from_module(module, input_shape=shape, budget=max(s.sweep))
        for r in budget_sweep(bb, new_surrogate, sp.defender, sp.test, list(s.sweep), DistillConfig(epochs=s.epochs)):
            w.write({k: r[k] for k in ("budget", "queries", "surrogate_accuracy", "ratio", "fidelity")})
    w.close()
    rows = [[r["budget"], r["queries"], r["surrogate_accuracy"], 100 * r["ratio"], r["fidelity"]]
            for r in read_rows(run.path / "rows" / "ducd_sweep.jsonl")]
    run.add_table({**table("Fig. 3: accuracy vs query budget", ["budget", "queries", "surrogate acc", "ratio %",
                                                                "fidelity"], rows), "section": "DUCD Fig. 3"})


def _attacks(run: RunDir, models: dict[Any, torch.nn.Module], test: Any, shape: tuple[int, int, int], s: DUCDScale,
             on_event: EventCallback | None) -> None:
    """Fig. 6-7: ASR vs eps of APGD (white-box on the base), Square (scores on the base, a transfer
    attack) and HSJA (label-only on the smoothed classifier itself); rows streamed per curve point."""
    from ...certified.ducd.attack import attack_success_curve
    from ...certified.ducd.defense import CertifiedClassifier
    from ...certify import make_noise
    from ...models import BlackBox

    x, y = test.x[:s.attack_images], test.y[:s.attack_images]
    w = run.rows("ducd_attacks", key="key")
    eps = [0.5, 1.0, 2.0, 3.0]
    for (meth, nz, sig), base in sorted(models.items(), key=lambda kv: str(kv[0])):
        if nz != "gaussian":
            continue
        clf = CertifiedClassifier(BlackBox.from_module(base, input_shape=shape),
                                  make_noise(nz, sigma=sig))
        for atk, params in (("apgd", {"steps": 20}), ("square", {"max_queries": 1000}),
                            ("hsja", {"max_queries": s.hsja_queries})):
            key = f"{meth}|{nz} {sig:g}|{atk}"
            if atk not in s.attacks or f"{key}|{eps[-1]}" in w.done:
                continue
            emit(on_event, "info", "ducd", message=f"attack curve {key}")
            for r in attack_success_curve(clf, base, atk, x, y, eps, norm="l2", n_predict=50, attack_params=params):
                w.write({"key": f"{key}|{r['eps']}", "method": meth, "noise": f"{nz} {sig:g}", "attack": r["attack"],
                         "eps": r["eps"], "asr": r["asr"], "n_correct": r["n_correct"], "queries": r["queries"],
                         "mode": r["mode"]})
    w.close()
    rows = [[r["method"], r["noise"], r["attack"], r["eps"], r["asr"], r["n_correct"], r["queries"], r["mode"]]
            for r in read_rows(run.path / "rows" / "ducd_attacks.jsonl")]
    run.add_table({**table("Fig. 6-7: attack success rate vs l2 eps on the certified classifier",
                           ["method", "noise", "attack", "eps l2", "ASR", "n correct", "queries", "mode"], rows,
                           "smoothed PREDICT with n=50, alpha=0.001; abstention counts as attack success"),
                   "section": "DUCD Fig. 6-7"})


def run_scaled(run: RunDir, s: DUCDScale, *, seed: int, cache_dir: Path, on_event: EventCallback | None = None,
               ray: RayOptions | None = None) -> dict[str, Any]:
    """Run the parts of ``s`` into ``run``; returns ``{"ours", "settings"}`` (see :class:`.base.PaperSuite`).
    ``ray``: the certification on Ray workers (the same rows)."""
    from ...certified.ducd import DistillConfig, build_surrogate
    from ...data import load_dataset, make_splits
    from ...models import BlackBox, load_checkpoint
    from ...training import TrainConfig, train_target
    from ..context import DEMO_ARCH, DEMO_DATASET, DEMO_TRAIN
    from .ducd import DUCDConfig, run_ducd

    cache = Path(cache_dir)
    path, meta = train_target(DEMO_ARCH, DEMO_DATASET, cache / f"target_{DEMO_ARCH}_{DEMO_DATASET}", DEMO_TRAIN,
                              reuse=True, on_event=on_event)
    module, _ = load_checkpoint(path)
    ds = load_dataset(DEMO_DATASET)
    sp = make_splits(ds, seed=0)
    c, h, w = meta["input_shape"]
    shape = (int(c), int(h), int(w))

    def new_surrogate() -> torch.nn.Module:
        return build_surrogate(s.surrogate, num_classes=10, input_shape=shape, mean=ds.mean, std=ds.std, seed=seed)

    if "tables" in s.parts:
        _surrogate_tables(run, module, sp, shape, ds, s, new_surrogate, on_event)
    if "sweep" in s.parts:
        _sweep(run, module, sp, shape, s, new_surrogate)
    ours: dict[str, Any] = {}
    models: dict[Any, torch.nn.Module] = {}
    if "certify" in s.parts or "attacks" in s.parts:
        rs_epochs = DEMO_TRAIN.epochs if s.rs_epochs is None else s.rs_epochs

        def rs_model(sigma: float) -> torch.nn.Module:
            cfg = TrainConfig(mode="gaussian", sigma=sigma, epochs=rs_epochs, seed=0)
            tag = "" if rs_epochs == DEMO_TRAIN.epochs else f"_e{rs_epochs}"
            p, _ = train_target(DEMO_ARCH, DEMO_DATASET, cache / f"rs_{DEMO_ARCH}_sigma{sigma:g}{tag}", cfg, reuse=True,
                                on_event=on_event)
            return load_checkpoint(p)[0]

        bb = BlackBox.from_module(module, input_shape=shape, budget=s.budget)
        cfg = DUCDConfig(sigmas=s.sigmas, norms=s.norms, n_images=s.n_images, certify=s.certify,
                         finetune_epochs=s.finetune_epochs, method=s.method, seed=seed)  # type: ignore[arg-type]
        ours = run_ducd(run, bb, new_surrogate(), sp.defender, sp.test, cfg,
                        distill_cfg=DistillConfig(budget=s.budget, epochs=s.epochs),
                        target_module=module if s.wucd else None, owner_train=sp.owner_train,
                        rs_model=rs_model if s.rs else None, section="DUCD Table IV", models=models,
                        on_event=on_event, ray=ray)
    if "attacks" in s.parts:
        _attacks(run, models, sp.test, shape, s, on_event)
    rs = (f"RS: SmallCNN trained with Gaussian noise for {s.rs_epochs or DEMO_TRAIN.epochs} epochs" if s.rs
          else "no RS") + ("" if s.wucd else "; no WUCD")
    return {"ours": ours, "settings": {
        "TABLE II": f"MNIST-5k, SmallCNN target, {s.surrogate} surrogate, {s.budget} queries on the defender split",
        "TABLE IV": f"MNIST-5k, SmallCNN target, {s.surrogate} surrogate ({s.budget} queries), {s.n_images} test "
                    f"images (class-interleaved), n0={s.n0} n={s.n}, sigma {list(s.sigmas)}; {rs}; score over "
                    "radii 0..2.0"}}


def run(run: RunDir, *, quick: bool, seed: int, cache_dir: Path, on_event: EventCallback | None = None,
        ray: RayOptions | None = None, method: str | None = None) -> dict[str, Any]:
    """The quick or the full DUCD suite (``method``: the certification method, default the scale's)."""
    from dataclasses import replace

    s = QUICK if quick else FULL
    return run_scaled(run, s if method is None else replace(s, method=method), seed=seed, cache_dir=cache_dir,
                      on_event=on_event, ray=ray)


FIGURES = _figures()
SUITE = catalog_suite("ducd", figures=FIGURES, run=run, certifies=True)

__all__ = ["FIGURES", "FULL", "QUICK", "SUITE", "TABLE4", "DUCDScale", "run", "run_scaled"]
