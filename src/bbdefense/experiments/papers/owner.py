"""What the owner-side suites (``rfd``, ``unig``) share: the target they defend, the attack
protocol, and the owner evaluation (:func:`bbdefense.evaluation.owner.evaluate_defenses`).

Target: the demo recipe (SmallCNN on the MNIST-5k owner split, 6 epochs; trained once into the
cache). Protocol (the "done-when" run of docs/owner-defenses.md): Square linf eps 0.3 on the first
``n`` test images of the class-interleaved split, criterion ``fast_exp`` (k = 9 uncounted
re-checks), EOT-m Square at m x the budget (the same iterations), clean accuracy on the whole test
split. Rows stream to ``rows/owner_eval.jsonl`` (a rerun resumes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ...data import Splits, load_dataset, make_splits
from ...events import EventCallback
from ...records import RunDir
from ..context import DEMO_ARCH, DEMO_DATASET, DEMO_TRAIN


@dataclass(frozen=True)
class OwnerScale:
    """How much of the owner protocol a suite runs (full = docs/owner-defenses.md, quick = minutes)."""

    n: int = 50
    eps: float = 0.3
    budgets: tuple[int, ...] = (1000,)
    eot_m: int = 10
    eot_budget: int = 10_000
    n_clean: int | None = None  # None: the whole test split
    clean_passes: int = 5
    cal_n: int = 500
    cal_passes: int = 5
    ratio_n: int = 300


def demo_target(cache_dir: Path, on_event: EventCallback | None = None) -> tuple[nn.Module, dict[str, Any], Splits]:
    """The demo target (trained into ``cache_dir`` on first use), its metadata and the MNIST-5k splits."""
    from ...models import load_checkpoint
    from ...training import train_target

    path, meta = train_target(DEMO_ARCH, DEMO_DATASET, Path(cache_dir) / f"target_{DEMO_ARCH}_{DEMO_DATASET}",
                              DEMO_TRAIN, reuse=True, on_event=on_event)
    module, _ = load_checkpoint(path)
    return module, meta, make_splits(load_dataset(DEMO_DATASET), seed=0)


def owner_setting(scale: OwnerScale, budget_note: str = "") -> str:
    """Our setting in words, for the comparison rows."""
    clean = "all 1000" if scale.n_clean is None else f"{scale.n_clean}"
    return (f"MNIST-5k, SmallCNN (demo target), {scale.n} test images (class-interleaved), linf eps {scale.eps}, "
            f"fast_exp; clean acc on {clean} test images x {scale.clean_passes} passes{budget_note}")


def evaluate_owner(run: RunDir, models: Mapping[str, nn.Module], undefended: nn.Module, splits: Splits,
                   scale: OwnerScale, *, seed: int, section: str, short: Mapping[str, str] | None = None,
                   on_event: EventCallback | None = None) -> dict[str, Any]:
    """Square (and EOT-m Square on the randomized models) on ``models``; returns evaluate_defenses' result
    plus ``ours``, keyed by the model's short name (``short[name]``, default the name itself):
    ``"<s>|clean"``, ``"<s>|logit_diff"``, ``"<s>|square@<budget>"``, ``"<s>|square@min"`` /
    ``"<s>|square@max"`` (smallest / largest budget) and ``"<s>|eot-square"``: robust accuracies as fractions."""
    from ...evaluation.owner import EvalConfig, evaluate_defenses

    cfg = EvalConfig(attacks=("square",), budgets=scale.budgets, decision_attacks=(), eot=("square",),
                     eot_m=scale.eot_m, eot_budget=scale.eot_budget, eps=scale.eps, criterion="fast_exp", k=9,
                     clean_passes=scale.clean_passes, seed=seed)
    test = splits.test
    m = len(test) if scale.n_clean is None else min(scale.n_clean, len(test))
    res = evaluate_defenses(models, undefended, test.x[:scale.n], test.y[:scale.n], cfg, x_clean=test.x[:m],
                            y_clean=test.y[:m], run=run, section=section, on_event=on_event)
    key = dict(short or {})
    ours: dict[str, Any] = {}
    for name, c in res["clean"].items():
        ours[f"{key.get(name, name)}|clean"] = c["clean_accuracy"]
        ours[f"{key.get(name, name)}|logit_diff"] = c["logit_difference"]
    lo, hi = min(scale.budgets), max(scale.budgets)
    for r in res["rows"]:
        s, b = key.get(r["defense"], r["defense"]), int(r["budget"])
        if r["attack"] == "square":
            ours[f"{s}|square@{b}"] = r["robust_accuracy"]
            for tag, at in (("min", lo), ("max", hi)):
                if b == at:
                    ours[f"{s}|square@{tag}"] = r["robust_accuracy"]
        elif r["attack"].startswith("eot"):
            ours[f"{s}|eot-square"] = r["robust_accuracy"]
    return {**res, "ours": ours}


__all__ = ["OwnerScale", "demo_target", "evaluate_owner", "owner_setting"]
