"""Suite ``unig``: Unifying Gradients (UniG) against score-based query attacks, on the demo target.

What it reproduces, at MNIST-5k / SmallCNN scale: the Table 1 layout (clean accuracy, logit
difference to the undefended model, robust accuracy under Square at a small and a large query
budget) for the undefended model and UniG, and the EOT-10 Square run of the owner protocol.

UniG runs with delta 0.2, lr 1 (the paper's CIFAR-10 delta 0.5, alpha 10 rescales MNIST features by
up to +-50%: docs/owner-defenses.md). Full = the UniG rows of ``benchmarks/owner_defenses_mnist.py``
(50 images, Square@1000, EOT-10 at 10 000 queries) plus Square at the paper's 100 and 2500 queries;
quick: 10 images, Square@100 and @500, EOT-5 at 1000 queries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...events import EventCallback
from ...records import RunDir
from .base import PaperFigure, catalog_suite
from .owner import OwnerScale, demo_target, evaluate_owner, owner_setting

FULL = OwnerScale(budgets=(100, 1000, 2500))
QUICK = OwnerScale(n=10, budgets=(100, 500), eot_m=5, eot_budget=1000, n_clean=200, clean_passes=2)
UNIG_PARAMS: dict[str, float] = {"lr": 1.0, "delta": 0.2}

_T1 = ("CIFAR-10 (whole test set), PreResNet18 (vanilla 94.26%), linf eps 8/255, UniG delta 0.5, p 1, "
       "alpha 10")
FIGURES: tuple[PaperFigure, ...] = (
    PaperFigure("Table 1", "Vanilla", "clean acc", 94.26, _T1, "undefended|clean"),
    PaperFigure("Table 1", "UniG", "clean acc", 94.26, _T1, "unig|clean"),
    PaperFigure("Table 1", "UniG", "logit diff", 1.09, _T1, "unig|logit_diff", unit="l2"),
    PaperFigure("Table 1", "Vanilla", "Square@100", 38.79, _T1, "undefended|square@min"),
    PaperFigure("Table 1", "Vanilla", "Square@2500", 0.46, _T1, "undefended|square@max"),
    PaperFigure("Table 1", "UniG", "Square@100", 81.90, _T1, "unig|square@min"),
    PaperFigure("Table 1", "UniG", "Square@2500", 77.80, _T1, "unig|square@max"),
)


def run(run: RunDir, *, quick: bool, seed: int, cache_dir: Path, on_event: EventCallback | None = None
        ) -> dict[str, Any]:
    """The undefended model and UniG under Square at each budget and EOT Square (Table 1 layout)."""
    from ...defenses import UniG

    scale = QUICK if quick else FULL
    module, _, splits = demo_target(cache_dir, on_event)
    name = f"unig{{delta={UNIG_PARAMS['delta']:g},lr={UNIG_PARAMS['lr']:g}}}"
    models = {"undefended": module, name: UniG(module, lr=UNIG_PARAMS["lr"], delta=UNIG_PARAMS["delta"], seed=seed)}
    res = evaluate_owner(run, models, module, splits, scale, seed=seed, section="UniG Table 1 layout",
                         short={"undefended": "undefended", name: "unig"}, on_event=on_event)
    lo, hi = min(scale.budgets), max(scale.budgets)
    setting = owner_setting(scale, f"; Square at {lo} (paper 100) and {hi} (paper 2500) queries; UniG delta "
                                   f"{UNIG_PARAMS['delta']:g}, lr {UNIG_PARAMS['lr']:g}")
    return {"ours": res["ours"], "settings": {"Table 1": setting}}


SUITE = catalog_suite("unig", figures=FIGURES, run=run)

__all__ = ["FIGURES", "FULL", "QUICK", "SUITE", "UNIG_PARAMS", "run"]
