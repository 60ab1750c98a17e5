"""Surrogate evaluation of DUCD (Li et al., arXiv 2408.10647, §IV-B, Tables I-II and Fig. 3).

* absolute accuracy: the surrogate's test accuracy;
* relative accuracy (ratio): ``surrogate accuracy / target accuracy`` (x100 in the paper's tables);
* fidelity (agreement): ``P_x[argmax T(x) == argmax A(x)]`` on the test set (Eq. 5's complement).

The target's test predictions are an *evaluation*, not part of the defender's distillation:
they go through :meth:`BlackBox.audit` (counted in ``stats.audit_queries``) and are reported
separately from the distillation queries. On a local model they are free; a remote API charges
them (``bb.audit_charged``), so there the target is measured on only as many test images as the
black box's audit allowance permits (its declared evaluation budget; 0 = not measured), and the
metrics say how many images that was and whether they were charged.
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
    """Top-1 labels ``(N,)`` of the target through :meth:`BlackBox.audit` (charged on a remote API)."""
    outs = []
    for i in range(0, len(x), batch_size):
        o = bb.audit(x[i:i + batch_size])
        outs.append(o.long() if bb.output == "label" else o.argmax(1))
    return torch.cat(outs).cpu()


@dataclass
class SurrogateMetrics:
    """Table I-II row: accuracies in [0, 1], ``ratio = surrogate / target``, fidelity, queries.

    ``surrogate_accuracy`` is on all ``n_test`` images (the surrogate is local). The target is
    measured on the first ``n_target_eval`` test images (all of them unless a charged evaluation
    budget limits it); ``target_accuracy``, ``ratio`` (surrogate / target accuracy on those same
    images) and ``fidelity`` are None when ``n_target_eval == 0``. ``audit_queries`` were sent for
    it, ``audit_charged`` says whether the target's owner billed them.
    """

    target_accuracy: float | None
    surrogate_accuracy: float
    ratio: float | None
    fidelity: float | None
    queries: int
    audit_queries: int
    n_test: int
    n_target_eval: int = 0
    audit_charged: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_surrogate(bb: BlackBox, surrogate: nn.Module, test: ImageDataset, *, queries: int = 0,
                       target_pred: Tensor | None = None, target_eval: int | None = None) -> SurrogateMetrics:
    """Accuracy of target and surrogate, ratio and fidelity on ``test``.

    ``queries`` is the distillation cost to report next to the figures; ``target_pred`` reuses
    the target's labels of the first ``len(target_pred)`` test images (then no audit query is made).
    ``target_eval`` caps the test images the target is asked about (default: all, limited by
    ``bb.audit_allowance``, i.e. by the evaluation budget where a remote API charges audits).
    The splits are class-interleaved, so a prefix holds every class in proportion.
    """
    a0 = bb.stats.audit_queries
    if target_pred is None:
        want = len(test) if target_eval is None else min(int(target_eval), len(test))
        m = bb.audit_allowance(want)
        tp = target_labels(bb, test.x[:m]) if m > 0 else torch.zeros(0, dtype=torch.long)
    else:
        tp = target_pred[: len(test) if target_eval is None else int(target_eval)]
        m = len(tp)
    sp = predict_labels(surrogate, test.x)
    s_acc = float((sp == test.y).float().mean())
    t_acc = ratio = fid = None
    if m > 0:
        yt, st = test.y[:m], sp[:m]
        t_acc = float((tp == yt).float().mean())
        s_sub = float((st == yt).float().mean())
        ratio = s_sub / t_acc if t_acc > 0 else float("nan")
        fid = float((tp == st).float().mean())
    return SurrogateMetrics(t_acc, s_acc, ratio, fid, int(queries), bb.stats.audit_queries - a0, len(test), m,
                            bb.audit_charged)


def target_eval_note(met: SurrogateMetrics) -> str:
    """One sentence for a table note: on how many test images the target was measured and whether
    those evaluation queries were charged (a remote API bills them)."""
    if met.n_target_eval == 0:
        return (f"surrogate accuracy on the test split (n={met.n_test}); the target's test accuracy, ratio and "
                "fidelity were not measured (no evaluation budget: a remote API charges every image it is sent)")
    where = (f"the first {met.n_target_eval} of {met.n_test} test images (class-interleaved)"
             if met.n_target_eval < met.n_test else f"the test split (n={met.n_test})")
    charged = ("charged by the remote API" if met.audit_charged else "free on a local model, not charged")
    return (f"surrogate accuracy on the test split (n={met.n_test}); target accuracy, ratio and fidelity on {where}, "
            f"measured with {met.audit_queries} evaluation (audit) queries, {charged}")


def budget_sweep(bb: BlackBox, make_surrogate: Callable[[], nn.Module], data: ImageDataset, test: ImageDataset,
                 budgets: Sequence[int], cfg: DistillConfig | None = None, *,
                 on_event: EventCallback | None = None, target_pred: Tensor | None = None,
                 on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Fig. 3: surrogate accuracy vs query budget.

    The transfer set of the largest budget is collected once; a smaller budget ``b`` uses its
    first ``b`` rows: the same base images in the same seeded order a fresh budget-``b`` run
    would query, then augmented queries from the same distribution (only the draws of a last
    partial query batch can differ from a fresh run). Total queries spent = ``max(budgets)``.
    A fresh surrogate is trained per budget; each row reports its own ``queries``.
    ``target_pred`` reuses the target's labels of a test prefix (no audit query); otherwise the
    target is measured as in :func:`evaluate_surrogate` (within ``bb.audit_allowance``).
    """
    cfg = cfg or DistillConfig()
    bs = sorted({int(b) for b in budgets})
    q0 = bb.stats.queries
    full = collect_transfer_set(bb, data.x, replace(cfg, budget=bs[-1]), on_event=on_event)
    if target_pred is None:
        m = bb.audit_allowance(len(test))
        target_pred = target_labels(bb, test.x[:m]) if m > 0 else torch.zeros(0, dtype=torch.long)
    tp = target_pred
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


__all__ = ["SurrogateMetrics", "budget_sweep", "evaluate_surrogate", "predict_labels", "target_eval_note",
           "target_labels"]
