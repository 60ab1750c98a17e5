"""``bbdefense privacy``: membership inference on a target checkpoint, its DUCD surrogates (distilled on
the same, disjoint and shifted data), their smoothed versions and an overfit positive control (DUCD Fig. 9)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import options as opt
from .common import RunOptions, out, progress_events, seed_everything, with_option_groups


def register(app: typer.Typer) -> None:
    app.command("privacy")(privacy_cmd)


@with_option_groups
def privacy_cmd(
    model: str = opt.model_option(help="The target (a kind with a torch module); the owner's training split of its "
                                   "split seed = members."),
    arch: str | None = typer.Option(None, "--arch", help="Zoo architecture of the shadow models and surrogates "
                                                            "(default: the checkpoint's)."),
    dataset: str | None = opt.dataset_option(),
    data_dir: Path | None = opt.data_dir_option(),
    split_seed: int | None = opt.split_seed_option(),
    n_members: int = opt.count_option(100, "-n", "--n-members", help="Members (and as many non-members)."),
    sources: str = typer.Option("same,disjoint,shifted", "--sources", help="DUCD surrogates to distil."),
    budget: int = opt.budget_option(1500, "Target queries per distillation."),
    epochs: int = opt.count_option(4, "--epochs", help="Distillation epochs."),
    sigma: float = opt.positive_option(0.25, "--sigma", help="Gaussian smoothing noise std (pixels)."),
    n_smooth: int = opt.count_option(16, "--n-smooth", help="Noisy draws per image of the smoothed models."),
    overfit_n: int = opt.count_option(100, "--overfit-n", minimum=0,
                                  help="Training-set size of the overfit control (0: off)."),
    overfit_epochs: int = typer.Option(40, "--overfit-epochs"),
    shadow: bool = typer.Option(True, "--shadow/--no-shadow", help="Shokri shadow-model attack."),
    n_boot: int = opt.count_option(1000, "--n-boot", help="Bootstrap resamples of the AUC interval."),
    out_dir: Path = typer.Option(Path("runs/privacy"), "--out"),
    ray: bool = opt.ray_option("the training of surrogates, shadow models and the overfit control"),
    address: str | None = opt.address_option(),
    *,
    run_opts: RunOptions,
) -> None:
    """Membership inference (thresholds, shadow, gap) on target, DUCD surrogates and smoothed models."""
    from ..errors import InputError
    from ..models import model_source
    from ..models.zoo import MODELS
    from ..privacy.study import StudyConfig, run_study
    from ..records import RunDir, render_report

    seed_everything(run_opts.seed)
    opt.check_writable_dir(out_dir, "--out")
    opt.check_ray(ray, address)  # Ray installed and the cluster answering, before any work
    module, meta = model_source(model).module("privacy")
    arch = arch or meta.get("arch")
    if arch is None:
        raise InputError(f"privacy retrains the target's architecture (shadow models, surrogates): {model} records "
                         "none; give --arch (a zoo name)")
    MODELS[arch]  # an unknown name is refused here
    cfg = StudyConfig(n_members=n_members, sources=tuple(s for s in sources.split(",") if s), distill_budget=budget,
                      distill_epochs=epochs, sigma=sigma, n_smooth=n_smooth, overfit_n=overfit_n,
                      overfit_epochs=overfit_epochs, shadow=shadow, n_boot=n_boot, seed=run_opts.seed)
    cfg.check()
    # the members are the owner's training split of the seed the checkpoint records
    ds_name, splits, split_seed = opt.resolve_splits(dataset, data_dir, meta=meta, split_seed=split_seed,
                                                 what=f"checkpoint {model}")
    opt.check_count(n_members, min(len(splits.owner_train), len(splits.test)), "-n",
                "members available (the owner's training split and the test split bound it)")
    run = RunDir(out_dir, kind="privacy", name=f"Membership inference on {Path(model).name}",
                 config={"model": str(model), "dataset": ds_name, "split_seed": split_seed, "study": cfg.__dict__},
                 seeds={"privacy": run_opts.seed}, resume=run_opts.resume)
    with progress_events(run_opts.progress) as cb:
        rows = run_study(run, module, arch, splits, cfg, cache_dir=run.path / "models",
                         section="Membership inference (DUCD Fig. 9)", on_event=cb, use_ray=ray, address=address)
    run.finish()
    md, _h = render_report(run.path)
    out.print(f"{'model':20s} {'attack':18s} {'bal.acc':>8s} {'AUC':>6s} {'95% CI':>16s} {'queries':>8s}")
    for r in rows:
        out.print(f"{r['model']:20s} {r['attack']:18s} {r['balanced_acc']:8.3f} {r['auc']:6.3f} "
                  f"[{r['auc_low']:.3f}, {r['auc_high']:.3f}] {r['queries']:8d}")
    out.print(f"wrote {md}")
