"""Demo slice: the target model as a query-counted black box (foundation)."""

from __future__ import annotations

import torch

from ...evaluation.intervals import proportion_ci
from ...evaluation.report import glance_accuracy
from ...records import table
from ..context import DemoContext, register_slice


@register_slice("target", "Target model (black box)", order=0)
def target_slice(ctx: DemoContext) -> None:
    sec = ctx.section("Target model (black box)",
                      "The owner's SmallCNN trained on the MNIST-5k owner split, queried only through a "
                      "query-counted BlackBox in each output mode.")
    test = ctx.splits.test
    rows: list[list[object]] = []
    correct = 0
    queries: list[int] = []
    for mode in ("logits", "probs", "label"):
        bb = ctx.blackbox(output=mode)
        preds = []
        for i in range(0, len(test), 250):
            preds.append(bb.predict_label(test.x[i:i + 250]))
        k = int((torch.cat(preds) == test.y).sum())
        if mode == "logits":  # for the at-a-glance table
            correct = k
        st = bb.stats
        queries.append(st.queries)
        rows.append([mode, k / len(test), [round(v, 3) for v in proportion_ci(k, len(test))], st.queries, st.calls])
    m = ctx.target_meta
    ctx.run.add_table({**table("Target", ["arch", "dataset", "n train (owner split)", "n test", "test accuracy",
                                          "train seconds"],
                               [[m["arch"], m["dataset"], m["metrics"]["n_train"], m["metrics"]["n_test"],
                                 m["metrics"]["test_accuracy"], m["metrics"]["train_seconds"]]]), "section": sec})
    ctx.run.add_table({**table("Clean accuracy through the black box",
                               ["output mode", "accuracy", "95% CI", "queries", "calls"], rows,
                               f"{len(test)} test images; 95% CI: Clopper-Pearson; queries = images forwarded, "
                               "counted by the oracle"), "section": sec})
    glance_accuracy(ctx.run, "target", "clean accuracy", correct, len(test))
    ctx.run.set_metrics(target_test_accuracy=correct / len(test), target_queries=sum(queries))
