"""Demo slice: robust accuracy vs queries of the undefended target under every black-box attack of
the registry (score- and decision-based; white-box attacks are left out)."""

from __future__ import annotations

from ...attacks import ATTACKS
from ...evaluation.attacks import attack_inputs, evaluate_attack, first_correct, query_grid
from ...evaluation.report import add_attack_curve, family_robust, fmt_ci, glance_accuracy
from ...records import table
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
    inp = attack_inputs(test.x, test.y, sel)
    grid = query_grid(budget)
    rows, evs = [], {}
    for name in names:
        bb = ctx.blackbox(name=f"target-{name}")
        ev = evaluate_attack(bb, name, inp.x, inp.y, inp.index, budget=budget, norm="linf", eps=EPS, seed=ctx.seed,
                             batch_size=len(inp.x), task=f"attack {name}", on_event=ctx.on_event)
        evs[name] = ev
        s = ev.summary
        rows.append([name, ATTACKS[name].access, s["robust_accuracy"], fmt_ci(s["robust_accuracy_ci"]),
                     s["median_queries_success"], s["mean_queries"], s["total_queries"], bb.stats.audit_queries,
                     round(ev.seconds, 2)])
    ctx.run.add_table({**table("Robust accuracy under query attacks",
                               ["attack", "access", "robust accuracy", "95% CI", "median queries (successes)",
                                "mean queries", "total queries", "audit queries", "seconds"], rows,
                               f"{len(inp.x)} images, linf eps={EPS}, budget {budget} queries/image; 95% CI: "
                               "Clopper-Pearson over the images"), "section": sec})
    ctx.run.add_table({**table("Robust accuracy vs queries per image", ["attack", *[str(q) for q in grid]],
                               [[name, *ev.curve] for name, ev in evs.items()]), "section": sec})
    add_attack_curve(ctx.run, "Robust accuracy vs queries (undefended target)", evs, section=sec)
    for access, family in (("scores", "score-based"), ("label", "decision-based")):
        fam = {a: ev for a, ev in evs.items() if ATTACKS[a].access == access}
        if fam:
            k, m = family_robust(fam)
            glance_accuracy(ctx.run, "target", f"robust accuracy, {family} attacks (linf {EPS}, {budget} queries)",
                            k, m, note=f"worst of {len(fam)}")
    ctx.run.set_metrics(**{f"attacks.robust_accuracy.{r[0]}": r[2] for r in rows},
                        **{"attacks.total_queries": sum(r[6] for r in rows)})
