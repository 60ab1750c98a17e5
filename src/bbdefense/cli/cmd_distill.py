"""``bbdefense distill``: distil a white-box surrogate from a black-box target under a query budget
(DUCD step 1), evaluate it (Tables I-II) and optionally sweep the budget (Fig. 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from . import options as opt
from .common import out, progress_events, seed_everything


def register(app: typer.Typer) -> None:
    app.command("distill")(distill_cmd)


def open_target(spec: str, *, output: str | None = "logits", budget: int | None = None, api_key: str | None = None,
                backend: str = "torch", eval_budget: int | None = None) -> Any:
    """The target's query-counted :class:`BlackBox` (any kind :func:`bbdefense.models.model_source` takes).

    ``eval_budget`` becomes the black box's ``audit_budget`` (evaluation queries). A remote API
    charges them, so a remote target gets 0 unless one is declared (the target's accuracy is then
    not measured); a local target's evaluation is free and unlimited unless one is given."""
    from ..models import model_source

    src = model_source(spec)
    audit = eval_budget if eval_budget is not None or src.kind != "url" else 0
    return src.blackbox(output=opt.narrow_optional(output, opt.OUTPUTS, "--output"), budget=budget, api_key=api_key,
                        backend=opt.narrow_choice(backend, opt.BACKENDS, "--backend"), audit_budget=audit)


def distill_cmd(
    target: str = opt.model_option("--target", help="The target (--target: deprecated alias)."),
    surrogate: str = typer.Option("smallcnn", "--surrogate", help="Zoo classifier to train as the surrogate."),
    dataset: str = opt.dataset_option("mnist5k", help="Dataset the distillation/test splits come from."),
    data_dir: Path | None = opt.data_dir_option(),
    split_seed: int | None = opt.split_seed_option(),
    split: str = typer.Option("defender", "--split", help="owner_train | defender | defender_shifted."),
    budget: int | None = opt.budget_option(None, "Hard query budget (default: each image once)."),
    eval_budget: int | None = typer.Option(
        None, "--eval-budget", help="Test images on which to measure the target (evaluation queries, charged by a "
        "remote API). Default: the whole test split for a local target (free), 0 for a remote one (not measured)."),
    output: str = opt.output_option("logits", help="What the API reveals: logits | probs | label."),
    backend: str = opt.backend_option(),
    loss: str = typer.Option("auto", "--loss", help="auto | l1_logits | l1_logprobs | ce_labels."),
    epochs: int = opt.count_option(20, "--epochs"),
    batch_size: int = opt.count_option(64, "--batch-size"),
    lr: float = opt.positive_option(1e-3, "--lr"),
    augment: str = typer.Option("shift,mixup,noise", "--augment", help="Augmented queries beyond the base images."),
    sweep: str | None = typer.Option(None, "--sweep", help="Comma-separated budgets for Fig. 3 (accuracy vs budget)."),
    api_key: str | None = opt.api_key_option(),
    out_dir: Path = typer.Option(Path("runs/distill"), "--out", help="Run directory (record, rows, surrogate)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Reuse a saved transfer set (no new query)."),
    seed: int = opt.seed_option(),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Distil SURROGATE from TARGET using only its outputs; report accuracy, ratio, fidelity and queries."""
    from ..certified.ducd import DistillConfig
    from ..certified.ducd.session import distill_into, planned_transfer
    from ..errors import InputError
    from ..records import RunDir, render_report

    seed_everything(seed)
    if split not in ("owner_train", "defender", "defender_shifted"):
        raise InputError(f"--split must be owner_train, defender or defender_shifted, got {split!r}")
    sweep_b = [int(s) for s in sweep.split(",") if s.strip()] if sweep else []
    if any(b < 1 for b in sweep_b):
        raise InputError(f"--sweep budgets must be >= 1, got {sweep}")
    if eval_budget is not None and eval_budget < 0:
        raise InputError(f"--eval-budget must be >= 0, got {eval_budget}")
    bb = open_target(target, output=output, budget=budget, api_key=api_key, backend=backend, eval_budget=eval_budget)
    dataset, splits, split_seed = opt.resolve_splits(dataset, data_dir, meta=opt.checkpoint_meta(target),
                                                 split_seed=split_seed, what=f"target {target}")
    data, test = splits[split], splits.test
    # the plan, checked against the local budgets and (remote) the key's remaining budget before any query
    n_transfer = planned_transfer(out_dir, resume, budget, len(data))
    n_eval = bb.audit_allowance(len(test)) if eval_budget is None else min(eval_budget, len(test))
    bb.check_plan(n_transfer, n_eval, what=f"distill ({n_transfer} transfer-set queries + {n_eval} evaluation)")
    if sweep_b and bb.remote:
        bb.check_remaining(n_transfer + n_eval + max(sweep_b),
                           what=f"distill --sweep ({n_transfer} transfer-set + {n_eval} evaluation + "
                                f"{max(sweep_b)} sweep queries)")
    used0 = bb.usage()["used"] if bb.remote and hasattr(bb, "usage") else None
    # typer gives str; cfg.check() below refuses an unknown loss with an InputError naming it
    cfg = DistillConfig(budget=budget, loss=loss, epochs=epochs, batch_size=batch_size, lr=lr,  # type: ignore[arg-type]
                        augment=tuple(a for a in augment.split(",") if a), seed=seed)
    cfg.check()
    config = {"target": target, "surrogate": surrogate, "dataset": dataset, "split_seed": split_seed, "split": split,
              "output": output,
              "distill": {**cfg.__dict__, "augment": list(cfg.augment)}, "sweep": sweep_b,
              "eval_budget": eval_budget}
    run = RunDir(out_dir, kind="distill", name=f"distill {surrogate} from {Path(target).name}", config=config,
                 seeds={"distill": seed}, resume=resume)
    with progress_events(progress) as cb:
        done = distill_into(run, bb, surrogate, data, test, cfg, dataset=dataset, split=split, output=output,
                            target=target, n_eval=n_eval, sweep=sweep_b, resume=resume, on_event=cb)
    res, met, transfer, ck = done.result, done.metrics, done.transfer, done.checkpoint
    charged, eval_charged, sweep_q = done.charged, done.eval_charged, done.sweep_queries
    server = ""
    if used0 is not None:
        moved = int(bb.usage()["used"]) - int(used0)
        server = f"; the server's count for this key moved by {moved}"
        run.set_metrics(**{"distill.server_used_delta": moved})
    run.finish()
    md, _ = render_report(run.path)
    if met.target_accuracy is None:
        vs = "target not measured (no --eval-budget)"
    else:
        vs = (f"target {met.target_accuracy:.4f} on {met.n_target_eval} images, ratio {100 * (met.ratio or 0):.2f}%, "
              f"fidelity {met.fidelity:.4f}")
    out.print(f"surrogate {surrogate}: accuracy {met.surrogate_accuracy:.4f} ({vs}), {len(transfer)} queries "
              f"({res.queries} new)")
    out.print(f"charged on the target this run: {charged + sweep_q} = {res.queries} transfer-set + {eval_charged} "
              f"evaluation{f' + {sweep_q} sweep' if sweep_b else ''}"
              + ("" if met.audit_charged else f" ({met.audit_queries} evaluation queries free on a local model)")
              + server)
    out.print(f"wrote {ck} and {md}")
