"""Demo slice: the target model as a query-counted black box (foundation)."""

from __future__ import annotations

import torch

from ...records import table
from ..context import DemoContext, register_slice


@register_slice("target", "Target model (black box)", order=0)
def target_slice(ctx: DemoContext) -> None:
    sec = ctx.section("Target model (black box)",
                      "The owner's SmallCNN trained on the MNIST-5k owner split, queried only through a "
                      "query-counted BlackBox in each output mode.")
    test = ctx.splits.test
    rows = []
    for mode in ("logits", "probs", "label"):
        bb = ctx.blackbox(output=mode)
        preds = []
        for i in range(0, len(test), 250):
            preds.append(bb.predict_label(test.x[i:i + 250]))
        acc = float((torch.cat(preds) == test.y).float().mean())
        st = bb.stats
        rows.append([mode, acc, st.queries, st.calls])
    m = ctx.target_meta
    ctx.run.add_table({**table("Target", ["arch", "dataset", "n train (owner split)", "n test", "test accuracy",
                                          "train seconds"],
                               [[m["arch"], m["dataset"], m["metrics"]["n_train"], m["metrics"]["n_test"],
                                 m["metrics"]["test_accuracy"], m["metrics"]["train_seconds"]]]), "section": sec})
    ctx.run.add_table({**table("Clean accuracy through the black box", ["output mode", "accuracy", "queries", "calls"],
                               rows, "queries = images forwarded, counted by the oracle"), "section": sec})
    ctx.run.set_metrics(target_test_accuracy=rows[0][1], target_queries=sum(r[2] for r in rows))
