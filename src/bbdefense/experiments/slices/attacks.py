"""Demo slice: robust accuracy vs queries of the undefended target under every black-box attack of
the registry (score- and decision-based; white-box attacks are left out)."""

from __future__ import annotations

import time

from ...attacks import ATTACKS
from ...evaluation.attacks import build_attack, first_correct, query_grid, robust_curve, run_batches, summarize
from ...records import line_plot, table
from ..context import DemoContext, register_slice

TITLE = "Query attacks on the undefended target"
EPS = 0.3  # the MNIST linf radius of the Square / NES / SignHunter references


@register_slice("attacks", TITLE, order=20)
def attacks_slice(ctx: DemoContext) -> None:
    n, budget = (20, 200) if ctx.quick else (50, 500)
    names = [a for a in sorted(ATTACKS) if ATTACKS[a].access in ("scores", "label") and not ATTACKS[a].requires]
    sec = ctx.section(TITLE, (
        f"Every black-box attack of the registry against the target, linf eps={EPS} (the MNIST radius of the "
        f"references), at most {budget} queries per image, on the first {n} correctly classified test images "
        "(clean check through uncharged audit queries). Robust accuracy is over those images; each attack runs "
        "with its reference defaults otherwise. Queries are counted per image as each reference counts them "
        "(docs/attacks.md); audit queries are the free checks some references make."))
    test = ctx.splits.test
    probe = ctx.blackbox(name="clean-check")
    sel, _, _ = first_correct(probe, test.x, test.y, n)
    x, y = test.x[sel], test.y[sel]
    grid = query_grid(budget)
    rows, series = [], []
    for name in names:
        bb = ctx.blackbox(name=f"target-{name}")
        atk = build_attack(name, norm="linf", eps=EPS, max_queries=budget, seed=ctx.seed)
        t0 = time.perf_counter()
        res_rows = run_batches(atk, bb, x, y, [int(i) for i in sel], batch_size=len(x), task=f"attack {name}",
                               on_event=ctx.on_event)
        secs = time.perf_counter() - t0
        s = summarize(res_rows, budget)
        curve = robust_curve([r["success"] for r in res_rows], [r["queries"] for r in res_rows], grid)
        series.append({"label": name, "x": grid, "y": curve})
        rows.append([name, ATTACKS[name].access, s["robust_accuracy"], s["median_queries_success"],
                     s["mean_queries"], s["total_queries"], bb.stats.audit_queries, round(secs, 2)])
    ctx.run.add_table({**table("Robust accuracy under query attacks",
                               ["attack", "access", "robust accuracy", "median queries (successes)",
                                "mean queries", "total queries", "audit queries", "seconds"], rows,
                               f"{len(x)} images, linf eps={EPS}, budget {budget} queries/image"), "section": sec})
    ctx.run.add_table({**table("Robust accuracy vs queries per image", ["attack", *[str(q) for q in grid]],
                               [[s["label"], *s["y"]] for s in series]), "section": sec})
    ctx.run.add_plot({**line_plot("Robust accuracy vs queries (undefended target)", series,
                                  xlabel="queries per image", ylabel="robust accuracy", xscale="log"),
                      "section": sec})
    ctx.run.set_metrics(**{f"attacks.robust_accuracy.{r[0]}": r[2] for r in rows},
                        **{"attacks.total_queries": sum(r[5] for r in rows)})
