"""A whole distillation run (``bbdefense distill``): distil a surrogate from a black box into a run directory
(transfer set reused on resume, per-epoch rows), evaluate it against the target (DUCD Tables I-II), save it as
a checkpoint, tabulate, and optionally sweep the query budget (Fig. 3). The CLI parses, checks the plan
against the budgets and prints; everything between lives here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ...errors import CheckpointError
from ...events import EventCallback
from ...models import BlackBox, CheckpointMeta, save_checkpoint
from ...records import RunDir, line_plot, table
from .distill import DistillConfig, DistillResult, TransferSet, build_surrogate, distill
from .evaluate import SurrogateMetrics, budget_sweep, evaluate_surrogate, target_eval_note, target_labels

if TYPE_CHECKING:
    from collections.abc import Callable

    from ...data import ImageDataset
    from ...records import RowWriter

SECTION = "Surrogate distillation (DUCD Tables I-II)"


def planned_transfer(out_dir: Path, resume: bool, budget: int | None, n_images: int) -> int:
    """Queries a distillation into ``out_dir`` will spend: 0 when a saved transfer set is reused."""
    if resume and (out_dir / "transfer.safetensors").is_file() and (out_dir / "transfer.json").is_file():
        return 0
    return n_images if budget is None else int(budget)


def _sink(rows: RowWriter) -> Callable[[dict[str, Any]], None]:
    """``rows.write`` as a callback that returns nothing (each epoch and each budget is written once)."""
    def write(row: dict[str, Any]) -> None:
        rows.write(row)
    return write


@dataclass
class DistillRun:
    """What :func:`distill_into` did: the distillation, the surrogate's metrics, the transfer set, the checkpoint
    written, queries charged on the target (transfer set + charged evaluation) and spent by the sweep."""

    result: DistillResult
    metrics: SurrogateMetrics
    transfer: TransferSet
    checkpoint: Path
    charged: int
    eval_charged: int
    sweep_queries: int


def distill_into(run: RunDir, bb: BlackBox, surrogate: str, data: ImageDataset, test: ImageDataset,
                 cfg: DistillConfig, *, dataset: str, split: str, output: str, target: str, n_eval: int,
                 sweep: list[int] | None = None, resume: bool = True,
                 on_event: EventCallback | None = None) -> DistillRun:
    """Distil zoo classifier ``surrogate`` from ``bb`` on ``data`` (the ``split`` of ``dataset``) into ``run``.

    A saved transfer set in ``run`` is reused when ``resume`` (no new query); the surrogate retrains from it.
    ``output`` labels what the target reveals in the table. The target is measured on the first ``n_eval``
    test images (audit queries, charged by a remote API).
    The surrogate is saved as ``run/surrogate`` (checkpoint metadata records the metrics, the distillation and
    ``target``); the "Surrogate vs target" table and the metrics go into ``run``. ``sweep`` budgets (Fig. 3)
    re-distil from scratch at each budget after resetting ``bb``'s counters (budget: the largest)."""
    transfer = None
    tpath = run.path / "transfer"
    if resume and tpath.with_suffix(".safetensors").is_file():
        try:
            transfer = TransferSet.load(tpath)
        except CheckpointError:
            transfer = None

    def make() -> nn.Module:
        return build_surrogate(surrogate, num_classes=bb.num_classes, input_shape=bb.input_shape, mean=test.mean,
                               std=test.std, seed=cfg.seed)

    sur = make()
    (run.path / "rows" / "epochs.jsonl").unlink(missing_ok=True)  # a rerun retrains (from the saved transfer set)
    epochs_w = run.rows("epochs", key="epoch")
    res, transfer = distill(bb, sur, data, cfg, transfer=transfer, on_event=on_event, on_epoch=_sink(epochs_w))
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
                          train={"distill": res.to_dict()}, seed=cfg.seed, extra={"target": target, "split": split})
    ck = save_checkpoint(run.path / "surrogate", sur, meta)
    run.record.artifacts["surrogate"] = str(ck.name)
    run.add_table({**table("Surrogate vs target", ["split", "output", "loss", "target acc", "surrogate acc", "ratio %",
                                                   "fidelity", "queries (base + augmented)", "new queries this run",
                                                   "evaluation queries", "charged this run (transfer + evaluation)"],
                           [[split, output, res.loss, met.target_accuracy, met.surrogate_accuracy,
                             None if met.ratio is None else 100 * met.ratio, met.fidelity,
                             f"{len(transfer)} ({transfer.n_base} + {len(transfer) - transfer.n_base})",
                             res.queries, met.audit_queries, f"{charged} ({res.queries} + {eval_charged})"]],
                           target_eval_note(met)), "section": SECTION})
    run.set_metrics(**{f"distill.{k}": v for k, v in met.to_dict().items()},
                    **{"distill.new_queries": res.queries, "distill.eval_queries": met.audit_queries,
                       "distill.charged": charged})
    if sweep:
        _sweep(run, bb, make, data, test, sweep, cfg, tp, on_event)
    sweep_q = bb.stats.queries if sweep else 0
    run.set_metrics(**{"distill.sweep_queries": sweep_q, "distill.charged_total": charged + sweep_q})
    return DistillRun(res, met, transfer, ck, charged, eval_charged, sweep_q)


def _sweep(run: RunDir, bb: BlackBox, make: Callable[[], nn.Module], data: ImageDataset, test: ImageDataset,
           budgets: list[int], cfg: DistillConfig, tp: torch.Tensor | None, on_event: EventCallback | None) -> None:
    """Fig. 3: accuracy vs query budget (rows ``sweep``, a table and a plot in ``run``)."""
    bb.reset_stats()
    bb.budget = max(budgets)
    rows_w = run.rows("sweep", key="budget")
    rows = budget_sweep(bb, make, data, test, budgets, cfg, on_event=on_event, on_row=_sink(rows_w),
                        target_pred=tp if tp is not None else torch.zeros(0, dtype=torch.long))
    rows_w.close()
    run.add_table({**table("Accuracy vs query budget (Fig. 3)", ["budget", "queries", "surrogate acc", "ratio %",
                                                                  "fidelity"],
                           [[r["budget"], r["queries"], r["surrogate_accuracy"],
                             None if r["ratio"] is None else 100 * r["ratio"], r["fidelity"]]
                            for r in rows]), "section": SECTION})
    run.add_plot({**line_plot("Surrogate accuracy vs query budget (Fig. 3)",
                              [{"label": "surrogate", "x": [r["queries"] for r in rows],
                                "y": [r["surrogate_accuracy"] for r in rows]},
                               {"label": "target", "x": [r["queries"] for r in rows],
                                "y": [r["target_accuracy"] for r in rows]}],
                              xlabel="queries", ylabel="test accuracy", xscale="log"), "section": SECTION})


__all__ = ["DistillRun", "distill_into", "planned_transfer"]
