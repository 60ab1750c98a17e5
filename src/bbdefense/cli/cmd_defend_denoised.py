"""``bbdefense defend zo-ae-ds`` and ``bbdefense defend irs``: denoised smoothing for black boxes."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import defend_app, out, progress_events, seed_everything
from .options import (check_count, check_writable_dir, checkpoint_meta, count_option, fraction_option, resolve_splits,
                      seed_option, split_seed_option)

RADII = (0.0, 0.25, 0.5, 0.75, 1.0)


def register(app: typer.Typer) -> None:
    defend_app.command("zo-ae-ds")(zo_ae_ds)
    defend_app.command("irs")(irs)


def _save(run, name: str, module) -> str:  # type: ignore[no-untyped-def]
    from safetensors.torch import save_file
    path = run.path / f"{name}.safetensors"
    save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, str(path))
    run.record.artifacts[name] = path.name
    run.save()
    return str(path)


def _certify_and_report(run, bb, pre, splits, *, sigma, n_test, n0, n, alpha, seed, title,  # type: ignore[no-untyped-def]
                        channel_scale=None, train_queries=0) -> None:
    from ..certify import Smooth, make_noise
    from ..certify.metrics import curve_from_certificates
    from ..records import render_report, table
    xt, yt = splits.test.x[:n_test], splits.test.y[:n_test]
    rows = run.rows("certify")
    sm = Smooth(bb, make_noise("gaussian", sigma=sigma), norms=("l2",), pre=pre, clip=pre is None,
                scale=channel_scale)
    q0 = bb.stats.queries
    certs = sm.certify(xt, n0=n0, n=n, alpha=alpha, batch_size=n0 + n, seed=seed, indices=range(len(xt)))
    for i, (c, y) in enumerate(zip(certs, yt.tolist())):
        rows.write({"idx": i, "label": y, "pred": c.label, "radius_l2": c.radius["l2"], "pA_lower": c.pA_lower,
                    "queries": c.n0 + c.n})
    rows.close()
    acc = dict(zip(RADII, curve_from_certificates(certs, yt.tolist(), "l2", RADII).tolist()))
    cq = bb.stats.queries - q0
    run.add_table(table(title, ["", *[f"r={r}" for r in RADII], "train queries", "certify queries"],
                        [["certified accuracy", *[acc[r] for r in RADII], train_queries, cq]],
                        f"Cohen CERTIFY n0={n0}, n={n}, alpha={alpha}, {len(yt)} test images; r=0 is SA"))
    run.set_metrics(**{f"ca@{r}": acc[r] for r in RADII}, train_queries=train_queries, certify_queries=cq)
    run.finish()
    render_report(run.path)
    out.print(f"{title}: SA {acc[0.0]:.3f}  CA@0.25 {acc[0.25]:.3f}  CA@0.5 {acc[0.5]:.3f}  CA@0.75 {acc[0.75]:.3f}"
              f"  (train queries {train_queries}, certify queries {cq})")
    out.print(f"wrote {run.path / 'report.md'}")


def zo_ae_ds(
    model: str = typer.Option(..., "--model", help="The black box: a checkpoint (FO variants need a checkpoint)."),
    dataset: str = typer.Option("mnist5k", "--dataset", help="Dataset; the defender split trains, the test split certifies."),
    variant: str = typer.Option("zo-ae-ds", "--variant", help="zo-ae-ds | zo-ds | fo-ae-ds | fo-ds | rs"),
    zo_method: str = typer.Option("rge", "--zo-method", help="rge | cge (latent space; zo-ds: rge only)"),
    q: int = typer.Option(192, "--q", help="RGE directions per sample."),
    mu: float = typer.Option(0.005, "--mu", help="ZO smoothing / finite-difference step."),
    difference: str = typer.Option("central", "--difference", help="CGE: central (code, 2d) | forward (paper, d+1)"),
    sigma: float = typer.Option(0.75, "--sigma", help="Noise std in pixel space (training and certification)."),
    epochs: int = typer.Option(4, "--epochs"),
    batch_size: int = typer.Option(50, "--batch-size"),
    lr: Optional[float] = typer.Option(None, "--lr", help="Adam lr (default 1e-3; zo-ds 1e-4, as the paper trains "
                                       "ZO-DS from scratch)."),
    mse_weight: float = typer.Option(0.0, "--mse-weight", help="Weight of the optional MSE(D(x+delta), x) term."),
    pretrain_epochs: int = typer.Option(0, "--pretrain-epochs", help=">0: MSE pre-training, then fine-tune."),
    ae_epochs: int = typer.Option(20, "--ae-epochs", help="AE pre-training epochs (AE variants)."),
    n_train: int = count_option(1000, "--n-train"),
    n_test: int = count_option(50, "--n-test"),
    n0: int = count_option(100, "--n0"),
    n: int = count_option(10_000, "--n"),
    alpha: float = fraction_option(0.001, "--alpha"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir"),
    split_seed: Optional[int] = split_seed_option(),
    out_dir: Path = typer.Option(Path("runs/zo-ae-ds"), "--out"),
    seed: int = seed_option(),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """ZO-AE-DS (Zhang et al., ICLR 2022): train a denoiser (+ encoder) in front of a black box
    using only its scores, then certify the smoothed classifier (every query counted)."""
    import torch

    from ..certified.zo_ae_ds.train import ZOAEDSConfig, pretrain_autoencoder, train_zo_ae_ds
    from ..errors import InputError
    from ..models import WhiteBox, load_blackbox, load_checkpoint
    from ..records import RunDir
    seed_everything(seed)
    cfg = None
    if lr is None:
        from ..experiments.papers.zo_ae_ds import ZO_DS_LR

        lr = ZO_DS_LR if variant == "zo-ds" else 1e-3
    if variant != "rs":
        cfg = ZOAEDSConfig(variant=variant, zo_method=zo_method, q=q, mu=mu, difference=difference,  # type: ignore[arg-type]
                           sigma=sigma, epochs=epochs, batch_size=batch_size, lr=lr, mse_weight=mse_weight,
                           pretrain_epochs=pretrain_epochs, seed=seed)
        cfg.check()
    check_writable_dir(out_dir, "--out")
    dataset, splits, split_seed = resolve_splits(dataset, data_dir, meta=checkpoint_meta(model),
                                                 split_seed=split_seed, what=f"model {model}")
    if tuple(splits.test.x.shape[1:]) != (1, 28, 28) and variant.endswith("ae-ds"):
        raise InputError(f"the AE variants ship the MNIST d_z=192 autoencoder only; {dataset!r} has images of shape "
                         f"{tuple(splits.test.x.shape[1:])}")
    check_count(n_test, len(splits.test), "--n-test", f"test images of {dataset}")
    bb = load_blackbox(model)
    run = RunDir(out_dir, kind="defend-zo-ae-ds", config={"model": model, "dataset": dataset, "split_seed": split_seed, "variant": variant,
                 "config": cfg.__dict__ if cfg else {}, "n0": n0, "n": n, "alpha": alpha, "n_test": n_test},
                 seeds={"seed": seed})
    train = splits.defender.subset(torch.arange(min(n_train, len(splits.defender))))
    pre, tq = None, 0
    if cfg is not None:
        ae = None
        if cfg.variant.endswith("ae-ds"):
            ae, mse = pretrain_autoencoder(train, epochs=ae_epochs, seed=seed)
            run.set_metrics(ae_mse=mse)
        tb = bb
        if cfg.variant.startswith("fo"):
            module, meta = load_checkpoint(model)
            tb = WhiteBox(module, input_shape=tuple(meta["input_shape"]))
        with progress_events(progress) as cb:
            res = train_zo_ae_ds(tb, train, cfg, ae=ae, on_event=cb)
        pre, tq = res.pipeline, res.queries
        run.set_metrics(queries_per_step=res.queries_per_step, train_seconds=res.seconds, history=res.history)
        _save(run, "pipeline", res.pipeline)
    bb.reset_stats()
    _certify_and_report(run, bb, pre, splits, sigma=sigma, n_test=n_test, n0=n0, n=n, alpha=alpha, seed=seed,
                        title=(cfg.label if cfg else "RS (Cohen, no denoiser)"), train_queries=tq)


def irs(
    surrogate: str = typer.Option(..., "--surrogate", help="Checkpoint of the ONE white-box surrogate used in training."),
    model: str = typer.Option(..., "--model", help="The unseen black box to protect and certify."),
    dataset: str = typer.Option("mnist5k", "--dataset"),
    method: str = typer.Option("irs", "--method", help="irs (IRS-Net) | salman (MSE+stability baseline)"),
    sigma: float = typer.Option(0.5, "--sigma", help="Noise std: on the normalised image (irs), on pixels (salman)."),
    lam: float = typer.Option(0.1, "--lambda", help="CE rescaling factor of Eq. 3."),
    epochs: int = typer.Option(20, "--epochs"),
    lr: float = typer.Option(0.1, "--lr"),
    optimizer: str = typer.Option("sgd", "--optimizer", help="sgd (paper) | adam"),
    width: int = typer.Option(16, "--width", help="UNet width."),
    n_train: int = count_option(1000, "--n-train"),
    n_test: int = count_option(50, "--n-test"),
    n0: int = count_option(100, "--n0"),
    n: int = count_option(10_000, "--n"),
    alpha: float = fraction_option(0.001, "--alpha"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir"),
    split_seed: Optional[int] = split_seed_option(),
    out_dir: Path = typer.Option(Path("runs/irs"), "--out"),
    seed: int = seed_option(),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """IRS-Net (Kumar & Narayan, IJCNN 2022): a UNet on the normalised noisy image, trained against one
    surrogate, put in front of an unseen black box and certified (radii in pixel space)."""
    import torch

    from ..certified.irs.irs_net import IRSConfig, pixel_sigma, train_denoiser
    from ..models import WhiteBox, load_blackbox, load_checkpoint
    from ..records import RunDir
    seed_everything(seed)
    cfg = IRSConfig(method=method, sigma=sigma, lam=lam, epochs=epochs, lr=lr, optimizer=optimizer,  # type: ignore[arg-type]
                    width=width, seed=seed)
    cfg.check()
    check_writable_dir(out_dir, "--out")
    dataset, splits, split_seed = resolve_splits(dataset, data_dir, meta=checkpoint_meta(model),
                                                 split_seed=split_seed, what=f"model {model}")
    check_count(n_test, len(splits.test), "--n-test", f"test images of {dataset}")
    module, meta = load_checkpoint(surrogate)
    bb = load_blackbox(model)
    run = RunDir(out_dir, kind="defend-irs", config={"surrogate": surrogate, "model": model, "dataset": dataset, "split_seed": split_seed,
                 "config": cfg.__dict__, "n0": n0, "n": n, "alpha": alpha, "n_test": n_test}, seeds={"seed": seed})
    sur = WhiteBox(module, input_shape=tuple(meta["input_shape"]))
    train = splits.defender.subset(torch.arange(min(n_train, len(splits.defender))))
    with progress_events(progress) as cb:
        res = train_denoiser(sur, train, cfg, on_event=cb)
    run.set_metrics(surrogate_forwards=res.surrogate_queries, train_seconds=res.seconds,
                    pixel_sigma=pixel_sigma(res.denoiser, sigma), history=res.history)
    _save(run, "denoiser", res.denoiser)
    _certify_and_report(run, bb, res.denoiser, splits, sigma=sigma, n_test=n_test, n0=n0, n=n, alpha=alpha, seed=seed,
                        title=f"{method} (sigma {sigma}, pixel sigma {pixel_sigma(res.denoiser, sigma):.3f})",
                        channel_scale=res.denoiser.noise_scale)
