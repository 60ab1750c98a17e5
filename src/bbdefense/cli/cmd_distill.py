"""``bbdefense distill``: distil a white-box surrogate from a black-box target under a query budget
(DUCD step 1), evaluate it (Tables I-II) and optionally sweep the budget (Fig. 3)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from . import options as opt
from .common import out, progress_events, seed_everything

if TYPE_CHECKING:
    from ..records import RowWriter


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


def _sink(rows: RowWriter) -> Callable[[dict[str, Any]], None]:
    """``rows.write`` as a callback that returns nothing (its "already written" flag is of no use to a
    distillation, which writes each epoch and each budget once)."""
    def write(row: dict[str, Any]) -> None:
        rows.write(row)
    return write


def planned_transfer(out_dir: Path, resume: bool, budget: int | None, n_images: int) -> int:
    """Queries a distillation into ``out_dir`` will spend: 0 when a saved transfer set is reused."""
    if resume and (out_dir / "transfer.safetensors").is_file() and (out_dir / "transfer.json").is_file():
        return 0
    return n_images if budget is None else int(budget)


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
    import torch

    from ..certified.ducd import DistillConfig, TransferSet, budget_sweep, build_surrogate, distill, evaluate_surrogate
    from ..certified.ducd.evaluate import target_eval_note, target_labels
    from ..errors import CheckpointError, InputError
    from ..models import CheckpointMeta, save_checkpoint
    from ..records import RunDir, line_plot, render_report, table

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
    sec = "Surrogate distillation (DUCD Tables I-II)"
    transfer = None
    tpath = run.path / "transfer"
    if resume and tpath.with_suffix(".safetensors").is_file():
        try:
            transfer = TransferSet.load(tpath)
        except CheckpointError:
            transfer = None

    def make() -> Any:
        return build_surrogate(surrogate, num_classes=bb.num_classes, input_shape=bb.input_shape, mean=test.mean,
                               std=test.std, seed=seed)

    sur = make()
    (run.path / "rows" / "epochs.jsonl").unlink(missing_ok=True)  # a rerun retrains (from the saved transfer set)
    epochs_w = run.rows("epochs", key="epoch")
    with progress_events(progress) as cb:
        res, transfer = distill(bb, sur, data, cfg, transfer=transfer, on_event=cb, on_epoch=_sink(epochs_w))
        transfer.save(tpath)
        a0 = bb.stats.audit_queries
        tp = target_labels(bb, test.x[:n_eval]) if n_eval > 0 else None
        met = evaluate_surrogate(bb, sur, test, queries=len(transfer), target_pred=tp, target_eval=n_eval)
        met.audit_queries = bb.stats.audit_queries - a0
    epochs_w.close()
    eval_charged = met.audit_queries if met.audit_charged else 0
    charged = res.queries + eval_charged
    meta = CheckpointMeta(arch=surrogate, arch_kwargs={"num_classes": bb.num_classes, "in_channels": bb.input_shape[0],
                                                       "image_size": bb.input_shape[1], "mean": list(test.mean),
                                                       "std": list(test.std)},
                          dataset=dataset, num_classes=bb.num_classes, input_shape=list(bb.input_shape),
                          mean=list(test.mean), std=list(test.std), metrics=met.to_dict(),
                          train={"distill": res.to_dict()}, seed=seed, extra={"target": target, "split": split})
    ck = save_checkpoint(run.path / "surrogate", sur, meta)
    run.record.artifacts["surrogate"] = str(ck.name)
    run.add_table({**table("Surrogate vs target", ["split", "output", "loss", "target acc", "surrogate acc", "ratio %",
                                                   "fidelity", "queries (base + augmented)", "new queries this run",
                                                   "evaluation queries", "charged this run (transfer + evaluation)"],
                           [[split, output, res.loss, met.target_accuracy, met.surrogate_accuracy,
                             None if met.ratio is None else 100 * met.ratio, met.fidelity,
                             f"{len(transfer)} ({transfer.n_base} + {len(transfer) - transfer.n_base})",
                             res.queries, met.audit_queries, f"{charged} ({res.queries} + {eval_charged})"]],
                           target_eval_note(met)), "section": sec})
    run.set_metrics(**{f"distill.{k}": v for k, v in met.to_dict().items()},
                    **{"distill.new_queries": res.queries, "distill.eval_queries": met.audit_queries,
                       "distill.charged": charged})
    if sweep_b:
        bb.reset_stats()
        bb.budget = max(sweep_b)
        rows_w = run.rows("sweep", key="budget")
        with progress_events(progress) as cb:
            rows = budget_sweep(bb, make, data, test, sweep_b, cfg, on_event=cb, on_row=_sink(rows_w),
                                target_pred=tp if tp is not None else torch.zeros(0, dtype=torch.long))
        rows_w.close()
        run.add_table({**table("Accuracy vs query budget (Fig. 3)", ["budget", "queries", "surrogate acc", "ratio %",
                                                                      "fidelity"],
                               [[r["budget"], r["queries"], r["surrogate_accuracy"],
                                 None if r["ratio"] is None else 100 * r["ratio"], r["fidelity"]]
                                for r in rows]), "section": sec})
        run.add_plot({**line_plot("Surrogate accuracy vs query budget (Fig. 3)",
                                  [{"label": "surrogate", "x": [r["queries"] for r in rows],
                                    "y": [r["surrogate_accuracy"] for r in rows]},
                                   {"label": "target", "x": [r["queries"] for r in rows],
                                    "y": [r["target_accuracy"] for r in rows]}],
                                  xlabel="queries", ylabel="test accuracy", xscale="log"), "section": sec})
    sweep_q = bb.stats.queries if sweep_b else 0
    server = ""
    if used0 is not None:
        moved = int(bb.usage()["used"]) - int(used0)
        server = f"; the server's count for this key moved by {moved}"
        run.set_metrics(**{"distill.server_used_delta": moved})
    run.set_metrics(**{"distill.sweep_queries": sweep_q, "distill.charged_total": charged + sweep_q})
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
