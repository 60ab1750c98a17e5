"""``bbdefense defend zo-ae-ds`` and ``bbdefense defend irs``: denoised smoothing for black boxes, through
the :class:`~bbdefense.certified.ZOAEDS` and :class:`~bbdefense.certified.IRSNet` estimators: fit (or
``--load DIR``), save the fitted defense into the run dir (``defense.json`` + weights, so the run dir is
itself loadable), certify the black box behind the fitted pre-processor with ``.certify``, tabulate."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from . import options as opt
from .common import CertifyRunOptions, defend_app, out, progress_events, seed_everything, with_option_groups


def register(app: typer.Typer) -> None:
    defend_app.command("zo-ae-ds")(zo_ae_ds)
    defend_app.command("irs")(irs)


def _certify_and_report(run: Any, sm: Any, splits: Any, o: CertifyRunOptions, *, title: str,
                        train_queries: int = 0, cb: Any = None) -> None:
    """Cohen CERTIFY of the smoothed classifier ``sm`` on the first ``o.n_test`` test images through the one
    evaluation layer (:func:`~bbdefense.evaluation.certification.certify_rows`: the rows of ``bbdefense certify``,
    resumable), then the certified-accuracy table at :data:`RADII` and the metrics."""
    from ..evaluation.certification import RADII, certified_accuracy, certify_rows
    from ..records import render_report, table

    n0, n, alpha = o.n0, o.n, o.alpha
    xt, yt = splits.test.x[:o.n_test], splits.test.y[:o.n_test]
    with run.rows("certify") as writer:
        res = certify_rows(sm, xt, yt, range(len(xt)), n0=n0, n=n, alpha=alpha, batch_size=n0 + n, seed=o.seed,
                           writer=writer, on_event=cb)
    acc = dict(zip(RADII, certified_accuracy(res.rows, "l2", RADII), strict=True))
    cq = sum(int(r["queries"]) for r in res.rows)
    run.add_table(table(title, ["", *[f"r={r}" for r in RADII], "train queries", "certify queries"],
                        [["certified accuracy", *[acc[r] for r in RADII], train_queries, cq]],
                        f"Cohen CERTIFY n0={n0}, n={n}, alpha={alpha}, {len(yt)} test images; r=0 is SA"))
    run.set_metrics(**{f"ca@{r}": acc[r] for r in RADII}, train_queries=train_queries, certify_queries=cq)
    run.finish()
    render_report(run.path)
    out.print(f"{title}: SA {acc[0.0]:.3f}  CA@0.25 {acc[0.25]:.3f}  CA@0.5 {acc[0.5]:.3f}  CA@0.75 {acc[0.75]:.3f}"
              f"  (train queries {train_queries}, certify queries {cq})")
    out.print(f"wrote {run.path / 'report.md'}")


def _check_loaded_split(est: Any, split_seed: int, load: Path | None) -> None:
    """A loaded defense was trained on the defender split of its split seed: certify on that seed's test split."""
    from ..errors import InputError

    if load is not None and est is not None and est.split_seed_ is not None and est.split_seed_ != split_seed:
        raise InputError(f"the defense in {load} was trained with split seed {est.split_seed_}, the model's test split "
                         f"is seed {split_seed}'s: its test images could be ones the defense was trained on")


@with_option_groups
def zo_ae_ds(
    model: str = opt.model_option(help="The black box (FO variants need a kind with a torch module)."),
    backend: str = opt.backend_option(),
    api_key: str | None = opt.api_key_option(),
    load: Path | None = typer.Option(None, "--load", help="A saved ZO-AE-DS defense (a run dir of this command): "
                                        "certify it in front of --model, no training."),
    dataset: str = opt.dataset_option("mnist5k", help="Dataset; the defender split trains, the test split certifies."),
    variant: str = typer.Option("zo-ae-ds", "--variant", help="zo-ae-ds | zo-ds | fo-ae-ds | fo-ds | rs"),
    zo_method: str = typer.Option("rge", "--zo-method", help="rge | cge (latent space; zo-ds: rge only)"),
    q: int = typer.Option(192, "--q", help="RGE directions per sample."),
    mu: float = typer.Option(0.005, "--mu", help="ZO smoothing / finite-difference step."),
    difference: str = typer.Option("central", "--difference", help="CGE: central (code, 2d) | forward (paper, d+1)"),
    sigma: float = typer.Option(0.75, "--sigma", help="Noise std in pixel space (training and certification)."),
    epochs: int = typer.Option(4, "--epochs"),
    batch_size: int = typer.Option(50, "--batch-size"),
    lr: float | None = typer.Option(None, "--lr", help="Adam lr (default 1e-3; zo-ds 1e-4, as the paper trains "
                                       "ZO-DS from scratch)."),
    mse_weight: float = typer.Option(0.0, "--mse-weight", help="Weight of the optional MSE(D(x+delta), x) term."),
    pretrain_epochs: int = typer.Option(0, "--pretrain-epochs", help=">0: MSE pre-training, then fine-tune."),
    ae_epochs: int = typer.Option(20, "--ae-epochs", help="AE pre-training epochs (AE variants)."),
    out_dir: Path = typer.Option(Path("runs/zo-ae-ds"), "--out"),
    *,
    o: CertifyRunOptions,
) -> None:
    """ZO-AE-DS (Zhang et al., ICLR 2022): train a denoiser (+ encoder) in front of a black box
    using only its scores, then certify the smoothed classifier (every query counted)."""
    import torch

    from ..certified import ZOAEDS
    from ..certify import Smooth, make_noise
    from ..errors import InputError
    from ..models import model_source
    from ..records import RunDir
    seed_everything(o.seed)
    est = None
    if load is not None:
        est = ZOAEDS.load(load)
    elif variant != "rs":
        if lr is None:
            from ..experiments.papers.zo_ae_ds import ZO_DS_LR

            lr = ZO_DS_LR if variant == "zo-ds" else 1e-3
        est = ZOAEDS(variant=variant, estimator=zo_method, q=q, mu=mu, difference=difference, sigma=sigma,
                     epochs=epochs, batch_size=batch_size, lr=lr, mse_weight=mse_weight,
                     pretrain_epochs=pretrain_epochs, ae_epochs=ae_epochs, seed=o.seed)
    opt.check_writable_dir(out_dir, "--out")
    src = model_source(model)
    dataset, splits, split_seed = opt.resolve_splits(dataset, o.data_dir, meta=src.meta(),
                                                     split_seed=o.split_seed, what=f"model {model}")
    if est is not None and est.uses_ae and tuple(splits.test.x.shape[1:]) != (1, 28, 28):
        raise InputError(f"the AE variants ship the MNIST d_z=192 autoencoder only; {dataset!r} has images of shape "
                         f"{tuple(splits.test.x.shape[1:])}")
    opt.check_count(o.n_test, len(splits.test), "--n-test", f"test images of {dataset}")
    _check_loaded_split(est, split_seed, load)
    fo = est is not None and load is None and est.variant.startswith("fo")
    tb = src.whitebox(f"defend zo-ae-ds --variant {est.variant}", budget=o.budget) if fo and est is not None else None
    bb = src.blackbox(backend=backend, api_key=api_key, budget=o.budget)  # type: ignore[arg-type]
    run = RunDir(out_dir, kind="defend-zo-ae-ds", config={
        "model": model, "load": str(load) if load else None, "dataset": dataset, "split_seed": split_seed,
        "variant": est.variant if est else "rs", "config": est.get_params() if est else {}, "n0": o.n0, "n": o.n,
        "alpha": o.alpha, "n_test": o.n_test}, seeds={"seed": o.seed})
    with progress_events(o.progress) as cb:
        if est is not None and load is None:
            train = splits.defender.subset(torch.arange(min(o.n_train, len(splits.defender))))
            t0 = time.perf_counter()
            est.fit(tb or bb, train, on_event=cb, split_seed=split_seed)
            run.set_metrics(queries_per_step=est.queries_per_step_, train_seconds=time.perf_counter() - t0,
                            history=est.history_, **({"ae_mse": est.ae_mse_} if est.ae_mse_ is not None else {}))
            est.save(run.path)  # the run dir is the defense: `defend zo-ae-ds --load <run dir>`
        if est is None:  # Cohen RS, no denoiser (noisy inputs clamped, as the black box accepts [0, 1] only)
            sm = Smooth(bb, make_noise("gaussian", sigma=sigma), norms=("l2",), clip=True)
            title, tq = "RS (Cohen, no denoiser)", 0
        else:
            sm, title, tq = est.smoothed(blackbox=bb), est.label, est.queries_
        _certify_and_report(run, sm, splits, o, title=title, train_queries=tq, cb=cb)


@with_option_groups
def irs(
    surrogate: str | None = typer.Option(None, "--surrogate", help="The ONE white-box surrogate used in training: "
                                         "a model spec with a torch module (checkpoint, TorchScript .pt, "
                                         "package.module:factory); not needed with --load."),
    model: str = opt.model_option(help="The unseen black box to protect and certify."),
    backend: str = opt.backend_option(),
    api_key: str | None = opt.api_key_option(),
    load: Path | None = typer.Option(None, "--load", help="A saved IRS-Net defense (a run dir of this command): "
                                        "certify it in front of --model, no training."),
    dataset: str = opt.dataset_option("mnist5k"),
    method: str = typer.Option("irs", "--method", help="irs (IRS-Net) | salman (MSE+stability baseline)"),
    sigma: float = typer.Option(0.5, "--sigma", help="Noise std: on the normalised image (irs), on pixels (salman)."),
    lam: float = typer.Option(0.1, "--lambda", help="CE rescaling factor of Eq. 3."),
    epochs: int = typer.Option(20, "--epochs"),
    lr: float = typer.Option(0.1, "--lr"),
    optimizer: str = typer.Option("sgd", "--optimizer", help="sgd (paper) | adam"),
    width: int = typer.Option(16, "--width", help="UNet width."),
    out_dir: Path = typer.Option(Path("runs/irs"), "--out"),
    *,
    o: CertifyRunOptions,
) -> None:
    """IRS-Net (Kumar & Narayan, IJCNN 2022): a UNet on the normalised noisy image, trained against one
    surrogate, put in front of an unseen black box and certified (radii in pixel space)."""
    import torch

    from ..certified import IRSNet
    from ..errors import InputError
    from ..models import model_source
    from ..records import RunDir
    seed_everything(o.seed)
    if (surrogate is None) == (load is None):
        raise InputError("give either --surrogate (train the denoiser against it) or --load DIR (a saved defense)")
    est = IRSNet.load(load) if load is not None else IRSNet(method=method, sigma=sigma, lam=lam, epochs=epochs, lr=lr,
                                                             optimizer=optimizer, width=width, seed=o.seed)
    opt.check_writable_dir(out_dir, "--out")
    src = model_source(model)
    dataset, splits, split_seed = opt.resolve_splits(dataset, o.data_dir, meta=src.meta(),
                                                     split_seed=o.split_seed, what=f"model {model}")
    opt.check_count(o.n_test, len(splits.test), "--n-test", f"test images of {dataset}")
    _check_loaded_split(est, split_seed, load)
    sur = model_source(str(surrogate)).whitebox("defend irs --surrogate") if load is None else None
    bb = src.blackbox(backend=backend, api_key=api_key, budget=o.budget)  # type: ignore[arg-type]
    run = RunDir(out_dir, kind="defend-irs", config={
        "surrogate": surrogate, "load": str(load) if load else None, "model": model, "dataset": dataset,
        "split_seed": split_seed, "config": est.get_params(), "n0": o.n0, "n": o.n, "alpha": o.alpha,
        "n_test": o.n_test}, seeds={"seed": o.seed})
    with progress_events(o.progress) as cb:
        if sur is not None:
            train = splits.defender.subset(torch.arange(min(o.n_train, len(splits.defender))))
            t0 = time.perf_counter()
            est.fit(sur, train, on_event=cb, split_seed=split_seed)
            run.set_metrics(train_seconds=time.perf_counter() - t0, history=est.history_)
            est.save(run.path)  # the run dir is the defense: `defend irs --load <run dir>`
        run.set_metrics(surrogate_forwards=est.queries_, pixel_sigma=est.pixel_sigma_)
        _certify_and_report(run, est.smoothed(blackbox=bb), splits, o, cb=cb,
                            title=f"{est.method} (sigma {est.sigma}, pixel sigma {est.pixel_sigma_:.3f})")
