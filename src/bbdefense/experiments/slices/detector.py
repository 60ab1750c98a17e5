"""Demo slice: the served target under Square, without and with a stateful detector (Blacklight), and
the adaptive (OARS) attacker."""

from __future__ import annotations

import functools
import time

from ...evaluation.attacks import first_correct
from ...evaluation.detector import Mode, detection_rows, summarize
from ...records import table
from ...serve.local import local_accounts
from ..context import DemoContext, register_slice

TITLE = "Stateful defense at the API: Blacklight against Square and OARS"
EPS = 0.3


@register_slice("detector", TITLE, order=95, quick=True)
def detector_slice(ctx: DemoContext) -> None:
    """Square (linf 0.3) through ``HttpBlackBox`` on the served target: no detector; Blacklight rejecting
    (403 attack_suspected); the OARS-adapted Square against the same Blacklight."""
    n, budget = (8, 300) if ctx.quick else (20, 1000)
    sec = ctx.section(TITLE, (
        "The target served by `bbdefense serve` (in-process HTTP client), attacked by Square (linf eps=0.3, at "
        f"most {budget} queries per image, batch 1, a fresh attacker and server state per image) on the first "
        f"{n} correctly classified test images: without a detector; with `--detector blacklight --on-detect "
        "reject` (Li et al. 2022: salted, quantised window hashes, top-50, 25 matches flag); and the OARS-adapted "
        "Square (Feng et al. 2023: rejected queries are re-drawn with growing random noise until accepted). "
        "See docs/stateful-defense.md for the full table (`bbdefense evaluate-detector`)."))
    test = ctx.splits.test
    owner = ctx.blackbox(output="probs", name="owner")
    sel, _, _ = first_correct(owner, test.x, test.y, n)
    x, y, idx = test.x[sel], test.y[sel], [int(i) for i in sel]
    served = ctx.blackbox(output="probs", name="target")
    rows, stats = [], {}
    settings: list[tuple[str, str | None, Mode]] = [
        ("no detector", None, "plain"), ("Blacklight, reject", "blacklight", "plain"),
        ("Blacklight, reject; OARS attacker", "blacklight", "oars")]
    for label, det, mode in settings:
        t0 = time.perf_counter()
        r = detection_rows(functools.partial(local_accounts, served, detector=det), "square", x, y, idx,
                           budget=budget, mode=mode, eps=EPS, seed=ctx.seed, owner=owner)
        s = summarize(r)
        stats[label] = s
        rows.append([label, s["n"], f"{s['success_rate']:.0%}", f"{s['detection_rate']:.0%}",
                     s["median_first_detection"] if s["median_first_detection"] is not None else "-",
                     s["median_rejected"], s["median_queries"], sum(q["queries"] for q in r),
                     f"{time.perf_counter() - t0:.1f}"])
    ctx.run.add_table({**table("Square through the API, without and with Blacklight", [
        "server", "images", "attack success", "detected", "median queries to 1st detection",
        "median rejected requests", "median queries answered", "queries answered (all images)", "seconds"], rows,
        f"linf eps={EPS}, budget {budget}/image; success of the plain attack counts only before its first "
        "rejection; the OARS success is re-checked on the owner's model"), "section": sec})
    plain, bl, oars = (stats[k] for k in stats)
    ctx.run.add_check("detector: Blacklight stops plain Square", bl["success_rate"] < plain["success_rate"],
                      f"success {plain['success_rate']:.0%} -> {bl['success_rate']:.0%}")
    ctx.run.add_check("detector: OARS gets past it", oars["success_rate"] > bl["success_rate"],
                      f"OARS success {oars['success_rate']:.0%} vs plain {bl['success_rate']:.0%}")
    ctx.run.set_metrics(detector_square_success=plain["success_rate"], detector_blacklight_success=bl["success_rate"],
                        detector_oars_success=oars["success_rate"], detector_detection_rate=bl["detection_rate"])
