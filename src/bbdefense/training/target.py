"""Train a zoo classifier on a dataset's owner split and save it as a checkpoint."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..data import load_dataset, make_splits
from ..data.splits import SPLIT_ORDER
from ..errors import CheckpointError, InputError
from ..events import EventCallback
from ..models.checkpoint import CheckpointMeta, checkpoint_paths, load_checkpoint, read_meta, save_checkpoint
from ..models.zoo import MODELS, build_model
from ..utils import seeded_init
from .train import TrainConfig, accuracy, train_classifier


def train_target(arch: str, dataset: str, out: str | Path, cfg: TrainConfig, *, data_dir: str | Path | None = None,
                 split: str = "owner_train", split_seed: int = 0, device: str | torch.device = "cpu",
                 reuse: bool = False, data_options: dict[str, Any] | None = None,
                 on_event: EventCallback | None = None) -> tuple[Path, dict[str, Any]]:
    """Train ``arch`` on ``dataset``'s ``split`` (default: the owner's training split) and write the
    checkpoint ``out`` (``.safetensors`` + ``.json``). The test-split accuracy is recorded.

    With ``reuse=True`` an existing checkpoint trained with the same arch, dataset, split and
    config is returned instead of training again (the demo's cache). ``data_options`` are passed to
    the dataset's loader (e.g. ``{"image_size": 64}`` for ``imagefolder``).
    """
    entry = MODELS[arch]
    if entry.kind != "classifier":
        raise InputError(f"{arch!r} is a {entry.kind}, not a classifier; `train` trains classifiers")
    cfg.check()
    # split_order: the order make_splits returns images in (it sets the training batches); a cached model
    # trained on the old class-sorted order is not reused
    wanted = {"arch": arch, "dataset": dataset, "split": split, "split_seed": split_seed, "split_order": SPLIT_ORDER,
              "config": asdict(cfg), "data_options": dict(data_options or {})}
    wpath, _ = checkpoint_paths(out)
    if reuse and wpath.is_file():
        try:
            cached = read_meta(out)
            if cached.get("extra", {}).get("recipe") == wanted:
                load_checkpoint(out)  # verifies the hash and the weights
                return wpath, cached
        except CheckpointError:
            pass
    ds = load_dataset(dataset, data_dir, **(data_options or {}))
    splits = make_splits(ds, seed=split_seed)
    train_set = splits[split]
    c, h, w = ds.input_shape
    arch_kwargs = {"num_classes": ds.num_classes, "in_channels": c, "image_size": h,
                   "mean": list(ds.mean), "std": list(ds.std)}
    with seeded_init(cfg.seed):  # parameter init uses the global RNG; the caller's stream is untouched
        model = build_model(arch, **arch_kwargs).to(device)
    result = train_classifier(model, train_set, cfg, on_event=on_event)
    test_acc = accuracy(model, splits.test)
    meta = CheckpointMeta(
        arch=arch, arch_kwargs=arch_kwargs, kind="classifier", dataset=dataset, num_classes=ds.num_classes,
        input_shape=[c, h, w], mean=list(ds.mean), std=list(ds.std),
        # train_accuracy: the final model on its (un-augmented) training split; the last epoch's running accuracy
        # on augmented inputs, which trails it, stays in train.history
        metrics={"test_accuracy": test_acc, "train_accuracy": accuracy(model, train_set),
                 "train_seconds": result.seconds, "n_train": len(train_set), "n_test": len(splits.test)},
        train={**asdict(cfg), "history": result.history, "split": split, "split_seed": split_seed},
        seed=cfg.seed, extra={"recipe": wanted},
    )
    path = save_checkpoint(out, model, meta)
    return path, read_meta(path)
