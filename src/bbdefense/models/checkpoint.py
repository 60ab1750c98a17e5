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

from ..errors import CheckpointError, UnknownNameError
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
    wpath.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    tmp_w = wpath.with_name(wpath.name + ".tmp")
    save_file(state, str(tmp_w))
    digest = _sha256(tmp_w)
    tmp_m = mpath.with_name(mpath.name + ".tmp")
    tmp_m.write_text(json.dumps(meta.to_json(digest), indent=2, sort_keys=True))
    tmp_w.replace(wpath)
    tmp_m.replace(mpath)
    return wpath


def read_meta(path: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint's JSON metadata (without loading weights)."""
    wpath, mpath = checkpoint_paths(path)
    if not mpath.is_file():
        raise CheckpointError(f"checkpoint metadata not found: {mpath}")
    try:
        meta = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint metadata {mpath} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{mpath} is not a bbdefense checkpoint (missing format={FORMAT!r})")
    if meta.get("schema_version", 0) > SCHEMA_VERSION:
        raise CheckpointError(f"{mpath} has schema_version {meta.get('schema_version')}, newer than this "
                              f"bbdefense understands ({SCHEMA_VERSION})")
    for key in ("arch", "arch_kwargs", "sha256"):
        if key not in meta:
            raise CheckpointError(f"checkpoint metadata {mpath} lacks {key!r}")
    return meta


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
    except UnknownNameError as exc:
        raise CheckpointError(f"checkpoint {wpath.name}: {exc}") from exc
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"checkpoint {wpath.name} does not fit architecture {meta['arch']!r}: {first}") from exc
    return module.to(device).eval(), meta
