"""Checkpoints: ``NAME.safetensors`` (weights) + ``NAME.json`` (metadata).

The metadata records the architecture and its constructor arguments, the dataset, the
normalisation, metrics (accuracy), the training setup, the seed, library versions and the SHA-256
of the weights file. Loading rebuilds the architecture from the zoo, verifies the hash and the
state-dict keys and shapes, and refuses any mismatch with a :class:`CheckpointError`. Nothing is
ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, InputError
from ..utils import environment

SCHEMA_VERSION = 1
FORMAT = "bbdefense-checkpoint"


@dataclass
class CheckpointMeta:
    """Metadata stored next to the weights (``NAME.json``)."""

    arch: str
    arch_kwargs: dict[str, Any]
    kind: str = "classifier"
    dataset: str | None = None
    num_classes: int | None = None
    input_shape: list[int] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    versions: dict[str, str] = field(default_factory=environment)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, sha256: str) -> dict[str, Any]:
        d = {"schema_version": SCHEMA_VERSION, "format": FORMAT, "sha256": sha256}
        d.update(self.__dict__)
        return d


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """``(weights, metadata)`` paths for ``X``, ``X.safetensors`` or ``X.json``."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(path: str | Path, module: nn.Module, meta: CheckpointMeta) -> Path:
    """Write ``module``'s state dict as safetensors and ``meta`` as JSON. Returns the weights path.

    Both files are written to temporary names and renamed, so an interrupted save leaves no
    half-written checkpoint behind.
    """
    from safetensors.torch import save_file

    wpath, mpath = checkpoint_paths(path)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    tmp_w = wpath.with_name(wpath.name + ".tmp")
    tmp_m = mpath.with_name(mpath.name + ".tmp")
    try:
        wpath.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(tmp_w))
        digest = _sha256(tmp_w)
        tmp_m.write_text(json.dumps(meta.to_json(digest), indent=2, sort_keys=True))
        tmp_w.replace(wpath)
        tmp_m.replace(mpath)
    except OSError as exc:
        raise CheckpointError(f"cannot write checkpoint {wpath}: {exc.strerror or exc}") from None
    return wpath


def read_json_record(path: Path, *, what: str, fmt: str, version_key: str, version: int,
                     required: tuple[str, ...]) -> dict[str, Any]:
    """Read a bbdefense JSON record (a checkpoint's metadata, a saved defense's ``defense.json``) and check its
    ``format`` tag, that its ``version_key`` is not newer than ``version`` and that it has the ``required`` keys;
    every failure is a :class:`CheckpointError` naming the file (``what`` names the kind of record)."""
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{what} {path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise CheckpointError(f"{path} is not a bbdefense {what} (missing format={fmt!r})")
    if int(meta.get(version_key, 0)) > version:
        raise CheckpointError(f"{path} has {version_key} {meta.get(version_key)}, newer than this bbdefense "
                              f"understands ({version})")
    for key in required:
        if key not in meta:
            raise CheckpointError(f"{what} {path} lacks {key!r}")
    return meta


def read_meta(path: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint's JSON metadata (without loading weights)."""
    _, mpath = checkpoint_paths(path)
    if not mpath.is_file():
        raise CheckpointError(f"checkpoint metadata not found: {mpath}")
    meta = read_json_record(mpath, what="checkpoint metadata", fmt=FORMAT, version_key="schema_version",
                            version=SCHEMA_VERSION, required=("arch", "arch_kwargs", "sha256"))
    if not isinstance(meta["arch_kwargs"], dict):
        raise CheckpointError(f"checkpoint metadata {mpath}: arch_kwargs must be an object, got "
                              f"{meta['arch_kwargs']!r}")
    shape, k = meta.get("input_shape"), meta.get("num_classes")
    if shape is not None and not (isinstance(shape, list) and len(shape) == 3 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)):
        raise CheckpointError(f"checkpoint metadata {mpath}: input_shape must be [C, H, W] of positive "
                              f"integers, got {shape!r}")
    if k is not None and not (isinstance(k, int) and not isinstance(k, bool) and k >= 2):
        raise CheckpointError(f"checkpoint metadata {mpath}: num_classes must be an integer >= 2, got {k!r}")
    return meta


def _check_answers(module: nn.Module, meta: dict[str, Any], name: str) -> None:
    """A classifier's recorded ``input_shape`` and ``num_classes`` match what its weights do: one image of
    that shape goes through and ``num_classes`` logits come out (else :class:`CheckpointError`)."""
    shape, k = meta["input_shape"], meta["num_classes"]
    try:
        with torch.no_grad():
            out = module(torch.zeros((1, *shape)))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"checkpoint {name}: its metadata says input_shape {list(shape)}, which the "
                              f"weights do not take ({first})") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, k):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise CheckpointError(f"checkpoint {name}: its metadata says {k} classes, the weights answer with "
                              f"{got[-1] if isinstance(got, tuple) and got else got} outputs")


def load_checkpoint(path: str | Path, *, expect_arch: str | None = None, expect_dataset: str | None = None,
                    device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from a checkpoint and return ``(module, metadata)``; the module is in eval mode.

    Raises:
        CheckpointError: a file is missing or corrupt (hash mismatch, unreadable safetensors,
            keys/shapes that do not fit the architecture), or the metadata does not match
            ``expect_arch`` / ``expect_dataset``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .zoo import build_model

    wpath, mpath = checkpoint_paths(path)
    meta = read_meta(path)
    if not wpath.is_file():
        raise CheckpointError(f"checkpoint weights not found: {wpath}")
    if expect_arch is not None and meta["arch"] != expect_arch:
        raise CheckpointError(f"checkpoint {wpath.name} holds a {meta['arch']!r}, expected {expect_arch!r}")
    if expect_dataset is not None and meta.get("dataset") != expect_dataset:
        raise CheckpointError(
            f"checkpoint {wpath.name} was trained on {meta.get('dataset')!r}, expected {expect_dataset!r}")
    if _sha256(wpath) != meta["sha256"]:
        raise CheckpointError(f"checkpoint weights {wpath} do not match the hash in {mpath.name} (corrupt or replaced)")
    try:
        state = load_file(str(wpath), device=str(torch.device(device)))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read checkpoint weights {wpath}: {exc}") from exc
    try:
        module = build_model(meta["arch"], **meta["arch_kwargs"])
    except InputError as exc:  # an unknown architecture, or arguments it does not take
        raise CheckpointError(f"checkpoint {wpath.name}: {exc}") from exc
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"checkpoint {wpath.name} does not fit architecture {meta['arch']!r}: {first}") from exc
    module.eval()
    if meta.get("kind", "classifier") == "classifier" and meta.get("input_shape") and meta.get("num_classes"):
        _check_answers(module, meta, wpath.name)
    return module.to(device), meta


def split_seed_of(meta: dict[str, Any]) -> int | None:
    """The seed of :func:`~bbdefense.data.make_splits` the checkpoint's model was trained with.

    ``train_target`` records it in ``meta["train"]["split_seed"]`` (and in the recipe under
    ``meta["extra"]["recipe"]``); ``None`` when the metadata says nothing (a model trained elsewhere).
    Every command that evaluates a checkpoint on "test" images reads it through here, so a model
    trained on another split seed is never evaluated on its own training images.
    """
    for src in (meta.get("train"), (meta.get("extra") or {}).get("recipe")):
        if isinstance(src, dict) and src.get("split_seed") is not None:
            return int(src["split_seed"])
    return None


def training_split_of(meta: dict[str, Any]) -> str | None:
    """Which split of :func:`~bbdefense.data.make_splits` the model was trained on (``None``: unknown)."""
    for src in (meta.get("train"), (meta.get("extra") or {}).get("recipe")):
        if isinstance(src, dict) and src.get("split"):
            return str(src["split"])
    return None
