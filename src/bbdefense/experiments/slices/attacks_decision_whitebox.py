"""Demo slice: decision-based, white-box / adaptive attacks and KnockoffNets on the undefended target.

Three tables, each with the queries spent next to every figure: label-only minimum-norm attacks
(RayS, SignFlip, HopSkipJump l2/linf), gradient attacks (PGD, AutoPGD-CE/DLR, ACG), and model
stealing followed by a transfer attack from the stolen model. Per-image rows stream to
``rows/attacks2_<attack>.jsonl`` as each attack finishes.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from ...attacks import ATTACKS, Attack, AttackResult
from ...attacks.knockoff import knockoff_steal
from ...records import table
from ..context import DemoContext, register_slice

TITLE = "Decision-based, white-box and model-stealing attacks"


def _attack(name: str, **params: Any) -> Attack:
    """``ATTACKS[name](**params)`` (the registry is typed by the base class, which takes no keywords)."""
    cls: Any = ATTACKS[name]
    return cls(**params)


def _rows(ctx: DemoContext, key: str, res: AttackResult) -> None:
    with ctx.run.rows(f"attacks2_{key}") as w:
        mn = res.extra.get("min_norm")
        for i in range(len(res.success)):
            w.write({"idx": i, "success": bool(res.success[i]), "queries": int(res.queries[i]),
                     "norm": float(res.norms[i]), "min_norm": None if mn is None else float(mn[i])})


@register_slice("attacks2", TITLE, order=32)
def attacks2_slice(ctx: DemoContext) -> None:
    quick = ctx.quick
    sec = ctx.section(TITLE, "Undefended SmallCNN target, test images it classifies correctly. Decision attacks "
                      "see labels only and report the closest adversarial found (success = distance <= eps); "
                      "gradient attacks get white-box access (every forward pass counts as a query); "
                      "KnockoffNets steals the target from the defender split with a fixed query budget, then "
                      "APGD on the stolen model is transferred (1 target query per image).")
    test = ctx.splits.test
    with torch.no_grad():
        pred = ctx.target_module(test.x[:300]).argmax(1)
    keep = (pred == test.y[:300]).nonzero().squeeze(1)
    n_dec, n_white = (6, 48) if quick else (12, 100)
    xd, yd = test.x[keep[:n_dec]], test.y[keep[:n_dec]]
    xw, yw = test.x[keep[:n_white]], test.y[keep[:n_white]]

    budget = 300 if quick else 800
    rows: list[list[Any]] = []
    specs = [("rays", {"norm": "linf", "eps": 0.2}), ("signflip", {"norm": "linf", "eps": 0.2}),
             ("hsja", {"norm": "linf", "eps": 0.2}), ("hsja", {"norm": "l2", "eps": 2.0})]
    for name, kw in specs:
        bb = ctx.blackbox(output="label")
        res = _attack(name, max_queries=budget, seed=ctx.seed, **kw).run(bb, xd, yd)
        _rows(ctx, f"{name}_{kw['norm']}", res)
        mn = res.extra["min_norm"]
        rows.append([name, kw["norm"], kw["eps"], len(xd), budget, round(1 - res.success_rate, 3),
                     round(float(mn[torch.isfinite(mn)].median()), 4), round(float(res.queries.float().mean()), 1),
                     int(bb.stats.queries)])
    ctx.run.add_table({**table("Label-only (decision) attacks", ["attack", "norm", "eps", "n", "budget/img",
                                                                  "robust acc", "median min distance",
                                                                  "mean queries/img", "total queries"], rows,
                               "robust acc = fraction not broken within eps and budget; min distance over the "
                               "whole run (early stop at eps)"), "section": sec})

    eps_w = 0.1
    steps = 10 if quick else 20
    rows = []
    white: list[tuple[str, dict[str, Any]]] = [("pgd", {}), ("apgd", {"loss": "ce"}), ("apgd", {"loss": "dlr"}),
                                               ("acg", {})]
    for name, kw in white:
        wb = ctx.whitebox()
        res = _attack(name, eps=eps_w, steps=steps, seed=ctx.seed, **kw).run(wb, xw, yw)
        label = name + (f"-{kw['loss']}" if kw else "")
        _rows(ctx, label, res)
        rows.append([label, "linf", eps_w, len(xw), steps, round(1 - res.success_rate, 3),
                     round(float(res.queries.float().mean()), 1), int(wb.stats.queries)])
    ctx.run.add_table({**table("White-box attacks", ["attack", "norm", "eps", "n", "steps", "robust acc",
                                                     "mean queries/img", "total queries"], rows,
                               "queries = forward passes through WhiteBox.logits"), "section": sec})

    rows = []
    ko_budget = 300 if quick else 600
    strategies: tuple[Literal["random", "adaptive"], ...] = ("random",) if quick else ("random", "adaptive")
    for strategy in strategies:
        victim = ctx.blackbox(output="probs", budget=ko_budget, name="victim")
        stolen = knockoff_steal(victim, ctx.splits.defender, arch="lenet", budget=ko_budget, strategy=strategy,
                                epochs=8 if quick else 10, eval_set=test, seed=ctx.seed)
        target_bb = ctx.blackbox(output="label")
        tr = _attack("transfer", surrogate=stolen.model, attack="apgd",
                     attack_params={"eps": eps_w, "steps": steps}, seed=ctx.seed).run(target_bb, xw, yw)
        _rows(ctx, f"transfer_{strategy}", tr)
        rows.append([strategy, ko_budget, stolen.queries, round(stolen.agreement or 0.0, 3),
                     round(stolen.accuracy or 0.0, 3), round(1 - tr.success_rate, 3), int(target_bb.stats.queries)])
    ctx.run.add_table({**table("KnockoffNets, then transfer APGD (linf 0.1) from the stolen model",
                               ["strategy", "budget", "victim queries", "agreement (test)", "stolen accuracy",
                                "robust acc under transfer", "transfer target queries"], rows,
                               "agreement/accuracy measured with uncharged audit queries"), "section": sec})
    ctx.run.set_metrics(**{"attacks2.knockoff_agreement": rows[0][3]})
