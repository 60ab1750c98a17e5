"""``bbdefense defend ducd``: DUCD end to end (distil under a budget, noise fine-tuning, Algorithm 3
certification for l1/l2/linf), with WUCD and Cohen RS baselines when the target is a local
checkpoint (white-box access for the ablations only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from .common import defend_app, out, progress_events, seed_everything
from .options import (api_key_option, backend_option, budget_option, check_count, check_writable_dir, checkpoint_meta,
                      count_option, data_dir_option, dataset_option, fraction_option, model_option, output_option,
                      positive_option, resolve_splits, seed_option, split_seed_option)


def register(app: typer.Typer) -> None:
    defend_app.command("ducd")(ducd_cmd)


def _floats(s: str, what: str) -> tuple[float, ...]:
    from ..errors import InputError

    try:
        v = tuple(float(t) for t in s.split(",") if t.strip())
    except ValueError as exc:
        raise InputError(f"{what} must be comma-separated numbers, got {s!r}") from exc
    if not v or any(x <= 0 for x in v):
        raise InputError(f"{what} must be positive numbers, got {s!r}")
    return v


def ducd_cmd(
    target: str = model_option("--target", help="The target (--target: deprecated alias); the WUCD and RS baselines "
                                            "need a checkpoint."),
    budget: int = budget_option(200_000, "Hard query budget of the distillation."),
    surrogate: str = typer.Option("smallcnn", "--surrogate", help="Zoo classifier used as the surrogate."),
    dataset: str = dataset_option("mnist5k"),
    data_dir: Optional[Path] = data_dir_option(),
    split_seed: Optional[int] = split_seed_option(),
    split: str = typer.Option("defender", "--split", help="Distillation data: owner_train | defender | defender_shifted."),
    output: str = output_option("logits", help="What the API reveals: logits | probs | label."),
    backend: str = backend_option(),
    epochs: int = count_option(20, "--epochs", help="Distillation epochs over the cached transfer set."),
    norms: str = typer.Option("l1,l2,linf", "--norms"),
    sigmas: str = typer.Option("0.25,0.5", "--sigmas", help="Noise std per coordinate (pixel space)."),
    l1_noise: str = typer.Option("laplace", "--l1-noise", help="Noise for l1 (Table IV: laplace)."),
    l2_noise: str = typer.Option("gaussian", "--l2-noise", help="Noise for l2 and linf (Table IV: gaussian)."),
    beta: Optional[float] = positive_option(None, "--beta", help="Shape when a noise is gen_gaussian."),
    n_images: int = count_option(100, "-n", "--n-images", help="Test images to certify."),
    n0: int = count_option(100, "--n0"),
    n: int = count_option(1000, "--n", help="Monte-Carlo samples for the bound (paper: 4000)."),
    alpha: float = fraction_option(0.001, "--alpha"),
    zeta: float = typer.Option(1.0, "--zeta", help="Algorithm 3 abstain threshold."),
    iota: float = typer.Option(0.5, "--iota", help="Algorithm 3 certification threshold."),
    finetune_epochs: int = typer.Option(3, "--finetune-epochs"),
    baselines: bool = typer.Option(True, "--baselines/--no-baselines", help="WUCD and RS (local checkpoint only)."),
    api_key: Optional[str] = api_key_option(),
    out_dir: Path = typer.Option(Path("runs/ducd"), "--out"),
    resume: bool = typer.Option(True, "--resume/--no-resume"),
    seed: int = seed_option(),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """DUCD: certify a black-box target through a distilled surrogate (l1/l2/linf), vs WUCD and RS."""
    from ..certified.ducd import DistillConfig, TransferSet, build_surrogate
    from ..experiments.papers.ducd import NORMS, DUCDConfig, run_ducd
    from ..errors import CheckpointError, InputError
    from ..models import load_checkpoint, model_source
    from ..records import RunDir, render_report
    from .cmd_distill import open_target, planned_transfer

    seed_everything(seed)
    norm_t = tuple(t for t in norms.split(",") if t)
    for t in norm_t:
        if t not in NORMS:
            raise InputError(f"unknown norm {t!r}; choose from {', '.join(NORMS)}")
    sig = _floats(sigmas, "--sigmas")
    if beta is None and "gen_gaussian" in (l1_noise, l2_noise):
        raise InputError("a gen_gaussian noise needs its shape: give --beta")
    params: dict[str, Any] = {} if beta is None else {"beta": beta}
    nfn = {"l1": (l1_noise, params if l1_noise == "gen_gaussian" else {}),
           "l2": (l2_noise, params if l2_noise == "gen_gaussian" else {}),
           "linf": (l2_noise, params if l2_noise == "gen_gaussian" else {})}
    cfg = DUCDConfig(sigmas=sig, norms=norm_t, noise_for_norm=nfn, n_images=n_images, n0=n0, n=n, alpha=alpha,
                     zeta=zeta, iota=iota, finetune_epochs=finetune_epochs, seed=seed)
    dcfg = DistillConfig(budget=budget, epochs=epochs, seed=seed)
    if split not in ("owner_train", "defender", "defender_shifted"):
        raise InputError(f"--split must be owner_train, defender or defender_shifted, got {split!r}")
    check_writable_dir(out_dir, "--out")
    dataset, splits, split_seed = resolve_splits(dataset, data_dir, meta=checkpoint_meta(target),
                                                 split_seed=split_seed, what=f"target {target}")
    ds = splits.test
    check_count(n_images, len(splits.test), "-n", f"test images of {dataset}")
    bb = open_target(target, output=output, budget=budget, api_key=api_key, backend=backend)
    # the plan against the budgets (and a remote key's remaining budget) before any query
    n_eval = bb.audit_allowance(len(splits.test))  # a remote target: 0 (its evaluation would be charged)
    bb.check_plan(planned_transfer(out_dir, resume, budget, len(splits[split])), n_eval, what="defend ducd")
    config = {"target": target, "surrogate": surrogate, "dataset": dataset, "split_seed": split_seed, "split": split,
              "output": output,
              "budget": budget, "epochs": epochs, "ducd": {**cfg.__dict__}, "baselines": baselines}
    run = RunDir(out_dir, kind="ducd", name=f"DUCD on {Path(target).name}", config=config, seeds={"ducd": seed},
                 resume=resume)
    tpath = run.path / "transfer"
    transfer = None
    if resume and tpath.with_suffix(".safetensors").is_file():
        try:
            transfer = TransferSet.load(tpath)
        except CheckpointError:
            transfer = None
    sur = build_surrogate(surrogate, num_classes=bb.num_classes, input_shape=bb.input_shape, mean=ds.mean,
                          std=ds.std, seed=seed)
    target_module = owner = rs_model = None
    local = model_source(target).kind == "checkpoint"  # the baselines retrain the checkpoint's recipe
    if baselines and local:
        target_module, meta = load_checkpoint(target)
        owner = splits.owner_train
        rs_model = _rs_factory(meta, run.path / "rs", seed)
    with progress_events(progress) as cb:
        if transfer is None:
            from ..certified.ducd.distill import collect_transfer_set

            transfer = collect_transfer_set(bb, splits[split].x, dcfg, on_event=cb)
            transfer.save(tpath)
        summary = run_ducd(run, bb, sur, splits[split], splits.test, cfg, distill_cfg=dcfg, transfer=transfer,
                           target_module=target_module, owner_train=owner, rs_model=rs_model,
                           section="DUCD certified defense (Table IV)", on_event=cb)
    run.finish()
    md, _h = render_report(run.path)
    vs = ("target not measured (remote: evaluation queries would be charged)" if summary["ratio"] is None else
          f"ratio {100 * summary['ratio']:.2f}% fidelity {summary['fidelity']:.4f}")
    out.print(f"surrogate {vs} with {summary['distill_queries']} target queries")
    for k in sorted(k for k in summary if k.endswith(".score")):
        out.print(f"{k:24s} {summary[k]:.4f}")
    out.print(f"wrote {md}")


def _rs_factory(meta: dict[str, Any], cache: Path, seed: int) -> Any:
    """Cohen RS baseline: the target's architecture trained from scratch with Gaussian noise at
    sigma on the owner's split (the target's own recipe otherwise), cached per sigma."""
    from ..models import load_checkpoint
    from ..training import TrainConfig, train_target

    tr = dict(meta.get("train", {}))
    epochs = int(tr.get("epochs", 6))

    def build(sigma: float) -> Any:
        cfg = TrainConfig(mode="gaussian", sigma=sigma, epochs=epochs, seed=seed)
        path, _ = train_target(meta["arch"], meta["dataset"], cache / f"rs_sigma{sigma:g}", cfg, reuse=True)
        return load_checkpoint(path)[0]

    return build
