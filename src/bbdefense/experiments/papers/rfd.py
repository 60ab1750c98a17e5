"""Suite ``rfd``: Randomized Feature Defense (Nguyen et al., ICLR 2024) on the demo target.

What it reproduces, at MNIST-5k / SmallCNN scale:

* the layer analysis (Table 6 and §3.5): per-layer gradient-norm ratios and the noise ``nu``
  calibrated per layer to a 2% clean-accuracy drop on the defender split; the layer with the
  largest robustness index ``nu * median ratio`` is the one randomized;
* Table 2 (CIFAR-10): clean accuracy and robust accuracy under Square of the undefended model, the
  randomized input (RND) and the randomized feature (RFD) defenses at the same ~2% clean cost;
* Table 7: EOT-M Square at M x the queries (the same iterations).

Full = ``benchmarks/owner_defenses_mnist.py`` as documented (docs/owner-defenses.md, "Done-when
table"): 50 images, Square@1000, EOT-10 at 10 000 queries. Quick: 10 images, Square@200, EOT-5 at
1000 queries, calibration on 200 images with 2 passes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...events import EventCallback, emit
from ...records import RunDir
from .base import PaperFigure, catalog_suite
from .owner import OwnerScale, demo_target, evaluate_owner, owner_setting

LAYERS: tuple[str, ...] = ("stage1", "stage2", "penultimate")
FULL = OwnerScale()
QUICK = OwnerScale(n=10, budgets=(200,), eot_m=5, eot_budget=1000, n_clean=200, clean_passes=2, cal_n=200,
                   cal_passes=2, ratio_n=100)
DROP = 0.02

_T2 = "CIFAR-10, VGG19 fine-tuned at 224x224, nu set for a ~2% clean-accuracy drop"
_T7 = "CIFAR-10, VGG19, EOT M=10 with QC=10000 queries (the same iterations as QC=1000 without EOT)"
FIGURES: tuple[PaperFigure, ...] = (
    PaperFigure("Table 2", "Base", "clean acc", 96.28, _T2, "undefended|clean"),
    PaperFigure("Table 2", "Input (RND)", "clean acc", 94.92, _T2, "rnd|clean"),
    PaperFigure("Table 2", "Feature (RFD)", "clean acc", 94.93, _T2, "rfd|clean"),
    PaperFigure("Table 2", "Base", "Square@1000", 0.6, _T2, "undefended|square@max"),
    PaperFigure("Table 2", "Input (RND)", "Square@1000", 30.6, _T2, "rnd|square@max"),
    PaperFigure("Table 2", "Feature (RFD)", "Square@1000", 61.0, _T2, "rfd|square@max"),
    PaperFigure("Table 7", "Input (RND)", "EOT-10 Square, QC=10000", 3.2, _T7, "rnd|eot-square"),
    PaperFigure("Table 7", "Feature (RFD)", "EOT-10 Square, QC=10000", 23.1, _T7, "rfd|eot-square"),
)


def calibrate(run: RunDir, module: Any, splits: Any, scale: OwnerScale, *, seed: int,
              on_event: EventCallback | None = None) -> tuple[dict[str, float], float, str]:
    """The layer analysis: per-layer ``nu`` (cached in ``calibration.json`` of the run, so a rerun
    resumes), RND's input ``nu``, and the layer with the largest robustness index. Adds the table."""
    from ...defenses import RandomizedFeatureDefense, RandomNoiseDefense, calibrate_noise
    from ...defenses.layer_analysis import gradient_ratios, layer_table
    from ...records import table

    xc, yc = splits.defender.x[:scale.cal_n], splits.defender.y[:scale.cal_n]
    cache = Path(run.path) / "calibration.json"
    cached: dict[str, Any] = json.loads(cache.read_text()) if cache.is_file() else {}
    rs = gradient_ratios(module, splits.defender.x[:scale.ratio_n], splits.defender.y[:scale.ratio_n], list(LAYERS),
                         step=0.03)
    for layer in (*LAYERS, "input"):
        if layer in cached:
            continue
        emit(on_event, "info", "rfd", message=f"calibrating nu at {layer} to a {DROP:.0%} drop")
        d: Any = (RandomNoiseDefense(module, nu=0.0) if layer == "input"
                  else RandomizedFeatureDefense(module, layers=[layer], nu=0.0))
        init = 0.05 if layer == "input" else 0.25
        c = calibrate_noise(d, xc, yc, target_drop=DROP, passes=scale.cal_passes, tol=0.004, init=init, seed=seed)
        cached[layer] = {"nu": c.value, "acc": c.accuracy, "base": c.base_accuracy, "tries": len(c.history)}
        if hasattr(d, "remove"):
            d.remove()
        cache.write_text(json.dumps(cached, indent=1))
    nus = {ly: float(cached[ly]["nu"]) for ly in LAYERS}
    cols, rows, best = layer_table(rs, nus, input_nu=cached["input"]["nu"])
    layer = (best if best not in (None, "input")
             else max(nus, key=lambda k: nus[k] * rs[LAYERS.index(k)].before.median()))
    run.add_table({**table("Layer analysis (RFD §3.5, Table 6 layout)", cols, rows,
                           f"SmallCNN, {scale.ratio_n} defender images for the ratios, nu calibrated to a {DROP:.0%} "
                           f"drop on {scale.cal_n} defender images ({scale.cal_passes} passes); layer used: {layer}"),
                   "section": "RFD layer analysis"})
    return nus, float(cached["input"]["nu"]), str(layer)


def run(run: RunDir, *, quick: bool, seed: int, cache_dir: Path, on_event: EventCallback | None = None
        ) -> dict[str, Any]:
    """Layer analysis, then the undefended / RND / RFD evaluation (Table 2 and Table 7 layouts)."""
    from ...defenses import RandomizedFeatureDefense, RandomNoiseDefense

    scale = QUICK if quick else FULL
    module, _, splits = demo_target(cache_dir, on_event)
    nus, nu_in, layer = calibrate(run, module, splits, scale, seed=seed, on_event=on_event)
    names = {"undefended": "undefended", f"rfd[{layer}] nu={nus[layer]:.3g}": "rfd", f"rnd nu={nu_in:.3g}": "rnd"}
    models = {"undefended": module,
              f"rfd[{layer}] nu={nus[layer]:.3g}": RandomizedFeatureDefense(module, layers=[layer], nu=nus[layer],
                                                                            seed=seed),
              f"rnd nu={nu_in:.3g}": RandomNoiseDefense(module, nu=nu_in, seed=seed)}
    res = evaluate_owner(run, models, module, splits, scale, seed=seed, section="RFD Table 2 / Table 7 layout",
                         short=names, on_event=on_event)
    b = max(scale.budgets)
    setting = owner_setting(scale, f"; Square@{b}; nu for a {DROP:.0%} drop on the defender split; layer {layer}")
    eot = owner_setting(scale, f"; EOT-{scale.eot_m} Square at {scale.eot_budget} queries")
    return {"ours": res["ours"], "settings": {"Table 2": setting, "Table 7": eot}}


SUITE = catalog_suite("rfd", figures=FIGURES, run=run)

__all__ = ["FIGURES", "FULL", "QUICK", "SUITE", "calibrate", "run"]
