"""Build a :class:`BlackBox` from what a user has: a checkpoint, an ONNX or TorchScript file."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Literal

import torch

from ..errors import CheckpointError, InputError
from .blackbox import BlackBox, OutputMode
from .checkpoint import checkpoint_paths, load_checkpoint, read_meta

BackendName = Literal["torch", "onnx"]


def load_blackbox(
    spec: str | Path,
    *,
    backend: BackendName = "torch",
    output: OutputMode | None = None,
    top_k: int | None = None,
    budget: int | None = None,
    device: str | torch.device = "cpu",
    input_shape: tuple[int, int, int] | None = None,
    log_queries: bool = False,
    api_key: str | None = None,
) -> BlackBox:
    """Open ``spec`` as a query-counted black box.

    ``spec`` is a bbdefense checkpoint (``X``, ``X.safetensors`` or ``X.json``), an ``.onnx`` file
    or a TorchScript file (``.pt``/``.ts``; give ``input_shape`` unless a ``.json`` sidecar with
    ``input_shape`` sits next to it). With ``backend="onnx"`` a checkpoint is exported to ONNX
    once and run with onnxruntime (faster for small CNNs on CPU).

    ``spec`` may also be an ``http://`` / ``https://`` URL of a ``bbdefense serve`` API
    (:class:`~bbdefense.serve.HttpBlackBox`; ``api_key`` or the ``BBDEFENSE_API_KEY`` environment
    variable is sent as the key). ``output`` defaults to ``"logits"`` for local models and to the
    server's mode for URLs.
    """
    from .backends import OnnxBackend, TorchBackend, TorchScriptBackend

    spec = str(spec)
    if spec.startswith(("http://", "https://")):
        import os

        from .remote import HttpBlackBox

        return HttpBlackBox(spec, api_key or os.environ.get("BBDEFENSE_API_KEY"), output=output, top_k=top_k,
                            budget=budget, log_queries=log_queries)
    output = output or "logits"
    kw = dict(output=output, top_k=top_k, budget=budget, log_queries=log_queries, name=Path(spec).stem)
    p = Path(spec)
    if p.suffix == ".onnx":
        ob = OnnxBackend(p)
        shape = input_shape or ob.input_shape
        if shape is None:
            raise InputError(f"{p.name} has no fixed input shape; pass input_shape")
        return BlackBox(ob, num_classes=ob.infer_num_classes(shape), input_shape=shape, **kw)  # type: ignore[arg-type]
    if p.suffix in (".pt", ".ts", ".pth"):
        tb = TorchScriptBackend(p, device=device)
        if input_shape is None:
            side = p.with_suffix(".json")
            if side.is_file():
                try:
                    shape_list = json.loads(side.read_text())["input_shape"]
                    input_shape = tuple(shape_list)  # type: ignore[assignment]
                except (ValueError, KeyError, TypeError) as exc:
                    msg = f"{side}: expected JSON with 'input_shape' [C, H, W]: {exc}"
                    raise CheckpointError(msg) from None
            else:
                raise InputError(f"pass input_shape for TorchScript file {p.name}")
        assert input_shape is not None
        return BlackBox(tb, num_classes=tb.infer_num_classes(input_shape), input_shape=input_shape, **kw)  # type: ignore[arg-type]
    wpath, _ = checkpoint_paths(p)
    if not wpath.is_file() and not p.exists():
        raise CheckpointError(f"model not found: {spec}")
    meta = read_meta(p)
    if meta.get("kind", "classifier") != "classifier":
        raise CheckpointError(f"{wpath.name} holds a {meta.get('kind')}, not a classifier")
    if not meta.get("input_shape") or not meta.get("num_classes"):
        raise CheckpointError(f"{wpath.name}: its metadata lacks input_shape or num_classes, which a black "
                              "box needs")
    shape = tuple(meta["input_shape"])
    if backend == "onnx":
        from .onnx_export import export_onnx

        module, meta = load_checkpoint(p)
        onnx_path = Path(tempfile.mkdtemp(prefix="bbdefense-onnx-")) / (wpath.stem + ".onnx")
        export_onnx(module, onnx_path, shape)  # type: ignore[arg-type]
        return BlackBox(OnnxBackend(onnx_path), num_classes=meta["num_classes"], input_shape=shape, **kw)  # type: ignore[arg-type]
    if backend != "torch":
        raise InputError(f"unknown backend {backend!r}; choose torch or onnx")
    module, meta = load_checkpoint(p, device=device)
    return BlackBox(TorchBackend(module), num_classes=meta["num_classes"], input_shape=shape, **kw)  # type: ignore[arg-type]
