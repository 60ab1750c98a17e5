"""Figures that used to mislead: one median everywhere (attack summaries = evaluation tables = numpy), and a
checkpoint's train_accuracy that is the final model's accuracy on its training split."""

from __future__ import annotations

import numpy as np
import torch

from bbdefense.attacks.base import AttackResult
from bbdefense.data import load_dataset, make_splits
from bbdefense.evaluation.attacks import summarize
from bbdefense.models import load_checkpoint
from bbdefense.training import TrainConfig, train_target
from bbdefense.training.train import accuracy


def test_attack_summary_median_is_the_evaluation_tables_median():
    queries = torch.tensor([80, 92, 120, 300, 7])
    success = torch.tensor([True, True, True, True, False])
    res = AttackResult(x_adv=torch.zeros(5, 1, 2, 2), success=success, queries=queries, norms=torch.zeros(5),
                       attack="square", params={}, norm="linf", eps=0.1)
    rows = [{"success": bool(s), "queries": int(q)} for s, q in zip(success, queries, strict=True)]
    want = float(np.median([80, 92, 120, 300]))  # 106.0; torch.median would say 92
    assert res.summary()["median_queries_success"] == want == summarize(rows, 300)["median_queries_success"]


def test_checkpoint_train_accuracy_is_the_final_model_on_its_training_split(tmp_path):
    path, meta = train_target("smallcnn", "digits", tmp_path / "m", TrainConfig(epochs=1, seed=0))
    module, _ = load_checkpoint(path)
    train = make_splits(load_dataset("digits"), seed=0).owner_train
    assert meta["metrics"]["train_accuracy"] == accuracy(module, train)
