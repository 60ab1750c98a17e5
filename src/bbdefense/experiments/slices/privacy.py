"""Demo slice: membership inference on the target, a DUCD surrogate, their smoothed versions and the
overfit positive control (DUCD §IV-G, Fig. 9)."""

from __future__ import annotations

from typing import Any

from ...evaluation.report import glance_value
from ...privacy.evaluate import strongest
from ...privacy.study import StudyConfig, run_study
from ...records import RunDir
from ..context import DEMO_ARCH, DemoContext, register_slice

TITLE = "Privacy: membership inference (DUCD Fig. 9)"


def note_mia(run: RunDir, rows: list[dict[str, Any]]) -> None:
    """Per model the AUC of its strongest membership-inference attack, with its bootstrap 95% interval, in the
    at-a-glance table (also used by the config runner)."""
    for model, r in strongest(rows).items():
        glance_value(run, model, "MIA AUC, strongest attack", r["auc"], r["auc_low"], r["auc_high"], n=r["n_eval"],
                     note=r["attack"])


@register_slice("privacy", TITLE, order=80)
def privacy_slice(ctx: DemoContext) -> None:
    quick = ctx.quick
    # kept small: the demo budget is ~15 s quick / ~45 s full on 2 cores (see docs/privacy.md)
    cfg = StudyConfig(n_members=100, sources=("disjoint",) if quick else ("disjoint", "shifted"),
                      distill_budget=1000 if quick else 1500, distill_epochs=2 if quick else 4,
                      n_smooth=8 if quick else 16, overfit_n=100, overfit_epochs=30 if quick else 40,
                      shadow=not quick, n_boot=200 if quick else 500, seed=ctx.seed)
    sec = ctx.section(TITLE, (
        f"Members: {cfg.n_members} images of the owner's training split; non-members: as many test images. "
        "Attacks: Song & Mittal thresholds (confidence, loss, entropy, modified entropy; threshold fitted on a "
        "calibration half, scored on the other half), the label-only gap attack"
        + (", and the Shokri shadow-model attack" if cfg.shadow else "")
        + f". Surrogates are DUCD distillations ({cfg.distill_budget} target queries each); '+RS' is Gaussian "
        f"smoothing (sigma {cfg.sigma}) read as class frequencies of {cfg.n_smooth} draws. The overfit target "
        f"({cfg.overfit_n} training images, {cfg.overfit_epochs} epochs) is the positive control. Queries column: "
        "distillation + attack queries (smoothed: base-model queries). A balanced accuracy / AUC of 0.5 is chance."))
    rows = run_study(ctx.run, ctx.target_module, DEMO_ARCH, ctx.splits, cfg, cache_dir=ctx.cache_dir / "privacy",
                     section=sec, on_event=ctx.on_event)
    note_mia(ctx.run, rows)
    by = {(r["model"], r["attack"]): r for r in rows}
    ctx.run.set_metrics(**{"privacy.target.loss_auc": by[("target", "loss")]["auc"],
                           "privacy.overfit.loss_auc": by[("overfit (control)", "loss")]["auc"]})
