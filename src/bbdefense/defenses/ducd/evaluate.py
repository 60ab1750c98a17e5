"""Surrogate evaluation of DUCD (Li et al., arXiv 2408.10647, §IV-B, Tables I-II and Fig. 3).

* absolute accuracy: the surrogate's test accuracy;
* relative accuracy (ratio): ``surrogate accuracy / target accuracy`` (x100 in the paper's tables);
* fidelity (agreement): ``P_x[argmax T(x) == argmax A(x)]`` on the test set (Eq. 5's complement).

The target's test predictions are an *evaluation*, not part of the defender's distillation:
they go through :meth:`BlackBox.audit` (counted in ``stats.audit_queries``, never charged to the
budget) and are reported separately from the distillation queries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from ...data import ImageDataset
from ...events import EventCallback
from ...models import BlackBox
from .distill import DistillConfig, TransferSet, collect_transfer_set, distill


@torch.no_grad()
def predict_labels(module: nn.Module, x: Tensor, *, batch_size: int = 500) -> Tensor:
    """Top-1 labels ``(N,)`` of a local module (white-box surrogate; no oracle involved)."""
    module.eval()
    dev = next(module.parameters()).device
    return torch.cat([module(x[i:i + batch_size].to(dev)).argmax(1).cpu() for i in range(0, len(x), batch_size)])


def target_labels(bb: BlackBox, x: Tensor, *, batch_size: int = 500) -> Tensor:
    """Top-1 labels ``(N,)`` of the target through :meth:`BlackBox.audit` (not charged)."""
    outs = []
    for i in range(0, len(x), batch_size):
        o = bb.audit(x[i:i + batch_size])
        outs.append(o.long() if bb.output == "label" else o.argmax(1))
    return torch.cat(outs).cpu()


@dataclass
class SurrogateMetrics:
    """Table I-II row: accuracies in [0, 1], ``ratio = surrogate / target``, fidelity, queries."""

    target_accuracy: float
    surrogate_accuracy: float
    ratio: float
    fidelity: float
    queries: int
    audit_queries: int
    n_test: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_surrogate(bb: BlackBox, surrogate: nn.Module, test: ImageDataset, *, queries: int = 0,
                       target_pred: Tensor | None = None) -> SurrogateMetrics:
    """Accuracy of target and surrogate, ratio and fidelity on ``test``.

    ``queries`` is the distillation cost to report next to the figures; ``target_pred`` reuses
    the target's test labels (then no audit query is made).
    """
    a0 = bb.stats.audit_queries
    tp = target_labels(bb, test.x) if target_pred is None else target_pred
    sp = predict_labels(surrogate, test.x)
    t_acc = float((tp == test.y).float().mean())
    s_acc = float((sp == test.y).float().mean())
    return SurrogateMetrics(t_acc, s_acc, s_acc / t_acc if t_acc > 0 else float("nan"),
                            float((tp == sp).float().mean()), int(queries), bb.stats.audit_queries - a0, len(test))


def budget_sweep(bb: BlackBox, make_surrogate: Callable[[], nn.Module], data: ImageDataset, test: ImageDataset,
                 budgets: Sequence[int], cfg: DistillConfig | None = None, *,
                 on_event: EventCallback | None = None,
                 on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Fig. 3: surrogate accuracy vs query budget.

    The transfer set of the largest budget is collected once; a smaller budget ``b`` uses its
    first ``b`` rows: the same base images in the same seeded order a fresh budget-``b`` run
    would query, then augmented queries from the same distribution (only the draws of a last
    partial query batch can differ from a fresh run). Total queries spent = ``max(budgets)``.
    A fresh surrogate is trained per budget; each row reports its own ``queries``.
    """
    cfg = cfg or DistillConfig()
    bs = sorted({int(b) for b in budgets})
    q0 = bb.stats.queries
    full = collect_transfer_set(bb, data.x, replace(cfg, budget=bs[-1]), on_event=on_event)
    tp = target_labels(bb, test.x)
    rows: list[dict[str, Any]] = []
    for b in bs:
        m = min(b, len(full))
        ts = TransferSet(full.x[:m], full.out[:m], full.output, min(m, full.n_base), dict(full.info))
        sur = make_surrogate()
        res, _ = distill(bb, sur, data, replace(cfg, budget=b), transfer=ts, on_event=on_event)
        met = evaluate_surrogate(bb, sur, test, queries=m, target_pred=tp)
        row = {"budget": b, "loss": res.loss, "n_base": ts.n_base, "n_augmented": m - ts.n_base, **met.to_dict()}
        rows.append(row)
        if on_row is not None:
            on_row(row)
    spent = bb.stats.queries - q0
    if spent != len(full):  # pragma: no cover - accounting bug guard
        raise RuntimeError(f"query accounting mismatch: transfer set {len(full)}, black box counted {spent}")
    return rows


__all__ = ["SurrogateMetrics", "budget_sweep", "evaluate_surrogate", "predict_labels", "target_labels"]
