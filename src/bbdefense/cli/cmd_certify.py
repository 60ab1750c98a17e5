"""Certification commands: ``certify`` (Cohen CERTIFY over a checkpoint's test images, streaming one row
per image with resume, record + report with certified-accuracy curves), ``certify-curves`` (pA-R curves
per noise family, DUCD Fig. 4-5) and ``select-noise`` (DUCD Table III at laptop scale)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import typer

from . import options as opt
from .common import out, progress_events, seed_everything


def register(app: typer.Typer) -> None:
    app.command("certify")(certify)
    app.command("certify-curves")(certify_curves)
    app.command("select-noise")(select_noise_cmd)


def _noise_params(beta: float | None, k: float | None) -> dict[str, float]:
    p: dict[str, float] = {}
    if beta is not None:
        p["beta"] = beta
    if k is not None:
        p["k"] = k
    return p


def certify(
    model: str = opt.model_option(help="The base classifier."),
    noise: str = typer.Option("gaussian", "--noise",
                              help="gaussian | laplace | gen_gaussian | uniform | cauchy | pareto"),
    sigma: float = opt.positive_option(0.25, "--sigma", help="Per-coordinate noise std in [0,1] pixel space."),
    beta: float | None = opt.positive_option(None, "--beta", help="Shape of gen_gaussian (required with it)."),
    k: float | None = opt.positive_option(None, "--k", help="Shape of pareto."),
    n0: int = opt.count_option(100, "--n0", help="Selection samples per image."),
    n: int = opt.count_option(10_000, "--n", help="Estimation samples per image (--method cohen)."),
    method: str = typer.Option("cohen", "--method", help="cohen (fixed n) | sequential (anytime-valid test of "
                               "robustness at each --radius, stopping per image as soon as it is decided)."),
    radius: list[float] = typer.Option([0.25, 0.5, 1.0], "--radius",
                                       help="Radii to decide (--method sequential; repeatable), in --decision-norm."),
    max_n: int = opt.count_option(100_000, "--max-n", help="Most estimation samples per image (--method sequential)."),
    decision_norm: str | None = typer.Option(None, "--decision-norm",
                                             help="Norm of --radius (default: the noise's closed-form norm)."),
    randomized: bool = typer.Option(False, "--randomized/--no-randomized",
                                    help="Randomized Clopper-Pearson bound (--method cohen): exact coverage "
                                         "1 - alpha, never a smaller radius."),
    defense: Path | None = typer.Option(None, "--defense", help="A saved certified defense (ZO-AE-DS, IRS-Net, "
                                        "DUCD run dir): certify its smoothed classifier in front of --model "
                                        "(its own noise; --noise/--sigma are ignored)."),
    alpha: float = opt.fraction_option(0.001, "--alpha",
                                   help="Failure probability of each certificate, in (0, 1)."),
    norm: list[str] = typer.Option(["l1", "l2", "linf"], "--norm", help="Norms to certify (repeatable)."),
    num_images: int = opt.count_option(100, "-n", "--num-images", help="Test images to certify."),
    skip: int = opt.count_option(1, "--skip", help="Certify every SKIP-th test image (Cohen's --skip)."),
    dataset: str | None = opt.dataset_option(),
    data_dir: Path | None = opt.data_dir_option(),
    split_seed: int | None = opt.split_seed_option(),
    out_dir: Path = typer.Option(Path("runs/certify"), "--out", help="Run directory (resumable)."),
    backend: str = opt.backend_option(),
    api_key: str | None = opt.api_key_option(),
    api_key_env: str | None = typer.Option(None, "--api-key-env", metavar="NAME",
                                           help="Read the API key from the environment variable NAME, here and, "
                                                "with --ray, on each worker (the key stays out of Ray's object "
                                                "store; docs/scale-out.md). Takes precedence over --api-key."),
    budget: int | None = opt.budget_option(None, "Hard limit on the queries this run spends (default: none)."),
    batch_size: int = opt.count_option(1000, "--batch-size", help="Noisy images per forward pass."),
    radius_method: str = typer.Option("auto", "--radius-method", help="auto | closed | numerical"),
    clip: bool = typer.Option(False, "--clip/--no-clip", help="Clamp noisy inputs to [0, 1]."),
    chunk: int = opt.count_option(10, "--chunk", help="Images certified per batch (rows are written per chunk)."),
    ray: bool = opt.ray_option("the certification (images sharded into --chunk chunks)"),
    address: str | None = opt.address_option(),
    seed: int = opt.seed_option(),
    resume: bool = typer.Option(True, "--resume/--no-resume"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Certify test images (Cohen CERTIFY or the sequential test): one row per image in OUT/rows/certify.jsonl
    (samples spent and, for sequential, the decision per radius), then report.md/html."""
    from ..certify import Smooth, make_noise
    from ..errors import InputError
    from ..evaluation.certification import certify_rows
    from ..evaluation.report import CertifiedSetting, add_certification, add_samples_table
    from ..experiments.config import SHAPE_PARAMS
    from ..models import model_source
    from ..records import RunDir, render_report

    seed_everything(seed)
    params = _noise_params(beta, k)
    if noise in SHAPE_PARAMS and SHAPE_PARAMS[noise] not in params:
        raise InputError(f"--noise {noise} needs its shape: give --{SHAPE_PARAMS[noise]}")
    nz = make_noise(noise, sigma=sigma, **params)
    opt.check_writable_dir(out_dir, "--out")
    opt.check_ray(ray, address)  # Ray installed and the cluster answering, before any work
    if api_key_env is not None:
        import os

        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise InputError(f"--api-key-env {api_key_env}: the variable is not set here")
    src = model_source(model)
    bb = src.blackbox(backend=opt.narrow_choice(backend, opt.BACKENDS, "--backend"), api_key=api_key, budget=budget)
    dataset, splits, split_seed = opt.resolve_splits(dataset, data_dir, meta=src.meta(),
                                                 split_seed=split_seed, what=f"model {model}")
    test = splits.test
    opt.check_count(num_images, len(range(0, len(test), skip)), "-n",
                f"test images of {dataset}" + (f" taken every {skip}" if skip > 1 else ""))
    idx = list(range(0, len(test), skip))[:num_images]
    meth = opt.narrow_choice(method, ("cohen", "sequential"), "--method")
    if defense is not None:
        from ..certified import load_defense
        from .cmd_defend_denoised import _check_loaded_split

        est = load_defense(defense, blackbox=bb)
        _check_loaded_split(est, split_seed, defense)
        sm = est.smoothed(blackbox=bb)  # the defense's own noise, pre-processor and scale: the same engine
        nz, sigma = sm.noise, sm.noise.sigma
    else:
        # typer gives str; Smooth checks radius_method and each norm, raising an InputError naming the bad one
        sm = Smooth(bb, nz, norms=norm, radius_method=radius_method, clip=clip)  # type: ignore[arg-type]
    config = {"model": str(model), "dataset": dataset, "split": "test", "split_seed": split_seed,
              "noise": nz.params(), "n0": n0, "n": n, "method": meth, "randomized": randomized,
              "alpha": alpha, "norms": list(sm.norms), "skip": skip, "seed": seed,
              "radius_method": radius_method, "clip": clip, "backend": backend,
              "defense": str(defense) if defense is not None else None}
    if meth == "sequential":
        config.update(radii=sorted(radius), max_n=max_n, decision_norm=sm.decision_norm(decision_norm))
    run = RunDir(out_dir, kind="certify", name=f"certify {src.name}", config=config,
                 seeds={"certify": seed}, resume=resume)
    t0 = time.perf_counter()
    with run.rows("certify") as writer, progress_events(progress) as cb:
        kw: dict[str, Any] = {"n0": n0, "n": n, "alpha": alpha, "batch_size": batch_size, "seed": seed,
                              "method": meth, "randomized": randomized, "radii": radius, "max_n": max_n,
                              "norm": decision_norm}
        if ray:  # the same rows from Ray workers (docs/scale-out.md); the certify kwargs go to every worker
            from ..evaluation.distributed import SmoothSpec, certify_rows_ray

            # the model's files (or, where a defense certifies its own in-memory model, e.g. DUCD's fine-tuned
            # surrogate, that module), the defense's pre-processor and scale are shipped; the key by value or name
            spec = SmoothSpec.of(sm, model if sm.model is bb else None, backend=backend,
                                 api_key=None if api_key_env else api_key, api_key_env=api_key_env)
            res = certify_rows_ray(spec, test.x[idx], test.y[idx], idx, chunk=chunk, writer=writer, on_event=cb,
                                   address=address, budget=budget, charge=sm.model, **kw)
        else:
            res = certify_rows(sm, test.x[idx], test.y[idx], idx, chunk=chunk, writer=writer, on_event=cb, **kw)
    rows = res.rows
    approx = any(r["approximate"] for r in rows)
    sec = f"Certification: {nz.name} sigma={sigma:g}" + (f" ({defense.name})" if defense is not None else "")
    how = (f"Sequential (anytime-valid) test at radii {sorted(radius)}, n0={n0}, at most {max_n} samples per "
           f"image" if meth == "sequential" else
           f"Cohen CERTIFY{' (randomized Clopper-Pearson)' if randomized else ''}, n0={n0}, n={n}")
    run.record.sections = [{"title": sec, "text": (
        f"{how}, alpha={alpha}, {len(rows)} test images of {dataset}; certified accuracy "
        f"counts correct certificates with radius >= r (abstentions wrong)."
        f"{' (approximate: numerical radii)' if approx else ''}")}]
    queries = sum(r["queries"] for r in rows)
    per = f"{n0}+{n} per image" if meth == "cohen" else "samples per image in the table below"
    add_certification(run, [CertifiedSetting(f"{nz.name} sigma={sigma:g}", sigma, sm.norms, rows)],
                      d=int(math.prod(bb.input_shape)), section=sec,
                      caption=f"{len(rows)} images, {queries} queries ({per})")
    if meth == "sequential":
        add_samples_table(run, rows, sorted(radius), section=sec)
    abst = sum(r["abstain"] for r in rows) / max(len(rows), 1)
    ran = bb.describe().get("backend_info")  # what --backend auto ran (models/onnx_auto.py)
    run.set_metrics(backend_ran=str(ran.get("path")) if isinstance(ran, dict) else type(bb.backend).__name__,
                    images=len(rows), queries=queries, abstain_rate=abst,
                    clean_accuracy=sum(r["correct"] for r in rows) / max(len(rows), 1),
                    seconds=round(time.perf_counter() - t0, 2))
    run.finish()
    md, _ = render_report(out_dir)
    out.print(f"certified {len(rows)} images ({res.new} new, {queries} queries); smoothed accuracy "
              f"{run.record.metrics['clean_accuracy']:.3f}, abstained {abst:.1%}; wrote {md}")


def certify_curves(
    noise: list[str] = typer.Option(["gaussian", "laplace", "pareto", "cauchy"], "--noise", help="Repeatable."),
    sigma: float = opt.positive_option(1.0, "--sigma",
                                   help="Common per-coordinate std (DUCD Fig. 4: equal variance)."),
    norm: list[str] = typer.Option(["l1", "l2", "linf"], "--norm", help="Repeatable."),
    dim: int = opt.count_option(784, "--dim", help="Input dimension d (784 = MNIST)."),
    points: int = opt.count_option(8, "--points", help="pA values in (0.5, 1)."),
    numerical: str = typer.Option("missing", "--numerical", help="missing | all | none"),
    n_mc: int = opt.count_option(1000, "--n-mc", help="Monte-Carlo samples of the numerical method."),
    out_dir: Path = typer.Option(Path("runs/certify-curves"), "--out"),
    seed: int = opt.seed_option(),
) -> None:
    """pA-R curves per noise family and norm (closed forms; numerical radii labelled approximate)."""
    import numpy as np

    from ..certify import make_noise
    from ..certify.metrics import pa_r_curves
    from ..errors import InputError
    from ..records import RunDir, line_plot, render_report, table

    seed_everything(seed)
    ps = [float(p) for p in np.linspace(0.55, 0.99, points)]
    noises = [make_noise(nm, sigma=sigma) for nm in noise]
    modes: dict[str, bool | str] = {"missing": "missing", "all": True, "none": False}
    if numerical not in modes:
        raise InputError(f"--numerical must be missing, all or none, got {numerical!r}")
    bad = [nm for nm in norm if nm not in ("l1", "l2", "linf")]
    if bad:
        raise InputError(f"--norm must be l1, l2 or linf, got {bad[0]!r}")
    mode = modes[numerical]
    opt.check_writable_dir(out_dir, "--out")
    config = {"noises": [z.params() for z in noises], "norms": list(norm), "dim": dim, "p": ps, "numerical": numerical,
              "n_mc": n_mc, "seed": seed}
    run = RunDir(out_dir, kind="certify-curves", name="pA-R curves", config=config, resume=False)
    series = pa_r_curves(noises, norm, dim, ps, numerical=mode, numerical_kw={"n_mc": n_mc, "seed": seed})
    sec = "pA-R curves"
    run.record.sections = [{"title": sec, "text": f"Certified radius vs pA lower bound, sigma={sigma:g}, d={dim}. "
                            "'numerical' series are approximate (DUCD/UniCR Monte-Carlo method)."}]
    for nm in norm:
        ss = [{"label": f"{s['noise']} ({s['method']}{', approximate' if s['approximate'] else ''})", "x": s["x"],
               "y": s["y"]} for s in series if s["norm"] == nm]
        run.add_plot({**line_plot(f"pA-R ({nm})", ss, xlabel="pA lower bound", ylabel=f"{nm} radius"), "section": sec})
    run.add_table({**table("pA-R values", ["noise", "norm", "method", "approximate", *[f"pA={p:.3f}" for p in ps]],
                           [[s["noise"], s["norm"], s["method"], s["approximate"], *s["y"]] for s in series]),
                   "section": sec})
    run.finish()
    md, _ = render_report(out_dir)
    out.print(f"wrote {md}")


def select_noise_cmd(
    arch: str = typer.Option("smallcnn", "--arch"),
    dataset: str = typer.Option("mnist5k", "--dataset"),
    betas: str = typer.Option("0.5,1,2,3", "--betas", help="Comma-separated shapes of the generalized Gaussian."),
    sigma: float = opt.positive_option(0.25, "--sigma"),
    epochs: int = opt.count_option(2, "--epochs"),
    num_images: int = opt.count_option(30, "-n", "--num-images"),
    n0: int = opt.count_option(50, "--n0"),
    n: int = opt.count_option(500, "--n"),
    alpha: float = opt.fraction_option(0.001, "--alpha"),
    radius_method: str = typer.Option("auto", "--radius-method", help="auto | numerical (DUCD: all numerical)"),
    out_dir: Path = typer.Option(Path("runs/select-noise"), "--out"),
    seed: int = opt.seed_option(),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """DUCD Table III: robust score per norm for each beta (one noise-trained model per beta)."""
    from ..certified.ducd.selection import select_noise
    from ..errors import InputError
    from ..records import RunDir, render_report, table

    seed_everything(seed)
    try:
        bs = [float(b) for b in betas.split(",") if b.strip()]
    except ValueError:
        raise InputError(f"--betas must be comma-separated numbers, got {betas!r}") from None
    if not bs or not all(math.isfinite(b) and b > 0 for b in bs):
        raise InputError(f"--betas must be comma-separated numbers > 0, got {betas!r}")
    opt.check_writable_dir(out_dir, "--out")
    with progress_events(progress) as cb:
        res = select_noise(arch, dataset, out_dir / "models", betas=bs, sigma=sigma, epochs=epochs,
                           n_images=num_images, n0=n0, n=n, alpha=alpha, radius_method=radius_method, seed=seed,
                           on_event=cb)
    config = {"arch": arch, "dataset": dataset, "betas": bs, "sigma": sigma, "epochs": epochs, "images": num_images,
              "n0": n0, "n": n, "alpha": alpha, "radius_method": radius_method, "seed": seed}
    run = RunDir(out_dir, kind="select-noise", name="noise selection", config=config, resume=False)
    sec = "Noise selection (DUCD Table III)"
    run.record.sections = [{"title": sec, "text": "Robust score (area under certified accuracy vs radius) per beta "
                            "and norm; grids: " + ", ".join(f"{k_} r_max={v['r_max']:.4g}" for k_, v in
                                                            res["grids"].items())}]
    rows = res["rows"]
    norms = sorted({r["norm"] for r in rows}, key=["l1", "l2", "linf"].index)
    run.add_table({**table("Robust score per beta", ["norm", *[f"beta={b:g}" for b in bs]],
                           [[nm, *[next(r["score"] for r in rows if r["norm"] == nm and r["beta"] == b) for b in bs]]
                            for nm in norms],
                           f"best: {res['best']}; {rows[-1]['queries']} queries per beta model; approximate="
                           f"{any(r['approximate'] for r in rows)}"), "section": sec})
    run.set_metrics(best=res["best"])
    run.finish()
    md, _ = render_report(out_dir)
    out.print(f"best beta per norm: {res['best']}; wrote {md}")
