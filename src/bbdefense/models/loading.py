"""Build a :class:`BlackBox` from what a user has (see :mod:`.resolve`, the one model resolver)."""

from __future__ import annotations

from pathlib import Path

import torch

from .blackbox import BlackBox, OutputMode
from .resolve import BackendName, model_source


def load_blackbox(
    spec: str | Path,
    *,
    backend: BackendName = "auto",
    output: OutputMode | None = None,
    top_k: int | None = None,
    budget: int | None = None,
    device: str | torch.device = "cpu",
    input_shape: tuple[int, int, int] | None = None,
    log_queries: bool = False,
    api_key: str | None = None,
    audit_budget: int | None = None,
) -> BlackBox:
    """Open ``spec`` as a query-counted black box: a bbdefense checkpoint (``X``, ``X.safetensors`` or
    ``X.json``), an ``.onnx`` file, a TorchScript file (``.pt``/``.ts``/``.pth``; give ``input_shape``
    unless a ``.json`` sidecar with ``input_shape`` sits next to it), an ``http(s)://`` URL of a
    ``bbdefense serve`` API (:class:`~bbdefense.models.remote.HttpBlackBox`; ``api_key`` or
    ``$BBDEFENSE_API_KEY`` is sent as the key) or a ``package.module:factory``.

    ``backend="auto"`` (default) runs a checkpoint or factory module eagerly for its first 10,000 images,
    then on the fastest CPU path that agrees with eager within 1e-5 (ONNX Runtime, channels_last or eager;
    :mod:`bbdefense.models.onnx_auto`; ``bb.describe()["backend_info"]`` says what ran); ``"torch"`` forces
    eager torch, ``"onnx"`` exports to ONNX once and runs onnxruntime. ``output`` defaults to ``"logits"``
    for local models and to the server's mode for URLs. Same as ``model_source(spec).blackbox(...)``
    (:func:`bbdefense.models.resolve.model_source`).
    """
    return model_source(spec).blackbox(backend=backend, output=output, top_k=top_k, budget=budget, api_key=api_key,
                                       device=device, input_shape=input_shape, log_queries=log_queries,
                                       audit_budget=audit_budget)


def export_checked(module: torch.nn.Module, path: str | Path, input_shape: tuple[int, int, int], *,
                   check: bool = True, tol: float = 1e-5) -> float | None:
    """Export ``module`` to ONNX at ``path`` and, with ``check``, compare onnxruntime with torch on 16 seeded
    random images; returns the max |difference| (``None`` unchecked), :class:`CheckpointError` above ``tol``."""
    from ..errors import CheckpointError
    from .backends import OnnxBackend
    from .onnx_export import export_onnx

    export_onnx(module, path, input_shape)
    if not check:
        return None
    x = torch.rand((16, *input_shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = module(x)
    diff = float((OnnxBackend(path).forward(x) - ref).abs().max())
    if diff > tol:
        raise CheckpointError(f"ONNX export differs from torch by {diff:.3g} > {tol:g}")
    return diff


__all__ = ["BackendName", "export_checked", "load_blackbox"]
