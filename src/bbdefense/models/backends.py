"""Backends a :class:`~bbdefense.models.BlackBox` forwards to: torch module, TorchScript file,
ONNX file (onnxruntime), any Python callable. The HTTP backends live in :mod:`bbdefense.models.remote`.

A backend only computes; it never counts or validates (the black box does both, once, in
``BlackBox._forward``). What a backend may declare, read by that single counting point:

* ``returns``, ``device``, ``randomized`` (required, see :class:`Backend`);
* ``cost`` (default 1): images billed per image forwarded (an EOT backend averaging ``m`` draws
  costs ``m``); ``max_batch``: the most images per call (a remote API's request limit: larger
  batches are sent, and counted, chunk by chunk); ``audit_backend``: where verification
  (:meth:`BlackBox.audit`) goes instead, at cost 1 (EOT audits one pass of the real model);
  ``remote``: the backend bills every image it is sent, audits included; ``expect(images)``: a caller
  about to send ``images`` images says so first (``backend="auto"`` chooses its path before the first of
  them, :mod:`bbdefense.models.onnx_auto`).

This module defines the protocol and the output modes, and imports nothing from the black box
(``blackbox`` imports from here, never the reverse).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal, Protocol, TypeGuard, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import CheckpointError, InputError
from ..utils import require_extra

OutputMode = Literal["logits", "probs", "label"]
OUTPUT_MODES: tuple[OutputMode, ...] = ("logits", "probs", "label")


@runtime_checkable
class Backend(Protocol):
    """What a black box forwards to.

    ``returns`` says what :meth:`forward` natively gives: ``"logits"`` or ``"probs"`` (shape
    ``(N, K)``) or ``"label"`` (shape ``(N,)``). ``device`` is where inputs should be sent.
    ``randomized`` is True when the same input can give different outputs. The optional
    declarations (``cost``, ``max_batch``, ``audit_backend``, ``remote``) are in the module docstring.
    """

    @property
    def returns(self) -> OutputMode: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def randomized(self) -> bool: ...

    def forward(self, x: Tensor) -> Tensor: ...


def module_num_classes(module: nn.Module) -> int | None:
    """The class count K a classifier module declares, read from its metadata without a forward pass:
    an int ``num_classes`` attribute, a zoo classifier's ``head`` (``nn.Linear``), the same on a wrapped
    ``module``/``model``/``classifier`` (owner-side defenses wrap the target), else the out-features of
    its last ``nn.Linear``. None when nothing tells."""
    seen: set[int] = set()
    m: object = module
    while isinstance(m, nn.Module) and id(m) not in seen:
        seen.add(id(m))
        k = getattr(m, "num_classes", None)
        if isinstance(k, int) and not isinstance(k, bool):
            return k
        head = getattr(m, "head", None)
        if isinstance(head, nn.Linear):
            return int(head.out_features)
        m = next((getattr(m, a) for a in ("module", "model", "classifier")
                  if isinstance(getattr(m, a, None), nn.Module)), None)
    last = [lin for lin in module.modules() if _is_linear(lin)]
    return int(last[-1].weight.shape[0]) if last else None


def _is_linear(m: nn.Module) -> TypeGuard[nn.Linear]:
    """An ``nn.Linear``, eager or TorchScript-compiled (a scripted Linear keeps ``original_name`` and a tensor
    ``weight`` of shape ``(out_features, in_features)``, which is all the callers read)."""
    if isinstance(m, nn.Linear):
        return True
    return getattr(m, "original_name", None) == "Linear" and isinstance(getattr(m, "weight", None), torch.Tensor)


class TorchBackend:
    """A local torch module mapping ``(N, C, H, W)`` in [0, 1] to logits ``(N, K)``.

    The module is put in eval mode; forward passes run under ``torch.inference_mode`` (except
    :meth:`forward_grad`, used by :class:`~bbdefense.models.WhiteBox`). The module owns its device.
    ``randomized`` is read from the module's ``randomized`` attribute when it has one (defenses
    declare it), else False.

    ``memory_format="channels_last"`` converts the module's weights and every 4-d input to NHWC (the CPU
    fast path of ``benchmarks/certify_fastpath.py``; outputs equal eager's within 1e-5); None (default)
    leaves them as they are.
    """

    returns: OutputMode = "logits"

    def __init__(self, module: nn.Module, *, memory_format: str | None = None) -> None:
        if not isinstance(module, nn.Module):
            raise InputError(f"expected a torch.nn.Module, got {type(module).__name__}")
        if memory_format not in (None, "channels_last"):
            raise InputError(f"memory_format must be None or 'channels_last', got {memory_format!r}")
        self.memory_format = torch.channels_last if memory_format == "channels_last" else None
        self.module = module.eval()
        if self.memory_format is not None:  # what Module.to(memory_format=) does: 4-d weights to NHWC, in place
            with torch.no_grad():
                for t in (*self.module.parameters(), *self.module.buffers()):
                    if t.dim() == 4:
                        t.data = t.data.contiguous(memory_format=self.memory_format)

    @property
    def randomized(self) -> bool:
        return bool(getattr(self.module, "randomized", False))

    @property
    def device(self) -> torch.device:
        for p in self.module.parameters():
            return p.device
        for b in self.module.buffers():
            return b.device
        return torch.device("cpu")

    def _layout(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=self.memory_format) if self.memory_format is not None and x.dim() == 4 else x

    def forward(self, x: Tensor) -> Tensor:
        with torch.inference_mode():
            return self.module(self._layout(x))

    def forward_grad(self, x: Tensor) -> Tensor:
        return self.module(self._layout(x))

    def infer_num_classes(self, input_shape: tuple[int, int, int]) -> int:
        x = torch.zeros((1, *input_shape), device=self.device)
        return int(self.forward(x).shape[1])


class TorchScriptBackend(TorchBackend):
    """A TorchScript file (``torch.jit.save``) loaded onto ``device``."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu") -> None:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"TorchScript file not found: {path}")
        try:
            module = torch.jit.load(str(path), map_location=torch.device(device))
        except Exception as exc:  # torch raises RuntimeError with long messages
            raise CheckpointError(f"cannot load TorchScript file {path}: {str(exc).splitlines()[0]}") from exc
        super().__init__(module)


class OnnxBackend:
    """An ONNX file run with onnxruntime (CPU by default; CUDA provider when asked and available).

    On this project's CPU onnxruntime runs small CNNs faster than eager torch, so query-heavy work
    on a checkpoint can use ``backend="onnx"`` (see :func:`bbdefense.models.load_blackbox`).
    """

    returns: OutputMode = "logits"
    randomized = False

    def __init__(self, path: str | Path, *, providers: list[str] | None = None, threads: int | None = None) -> None:
        ort = require_extra("onnxruntime", "onnx", "an ONNX model (onnxruntime backend)")

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"ONNX file not found: {path}")
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts,
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:
            raise CheckpointError(f"cannot load ONNX file {path}: {str(exc).splitlines()[0]}") from exc
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dims = inp.shape  # e.g. ['n', 1, 28, 28]
        self.device = torch.device("cpu")

    @property
    def input_shape(self) -> tuple[int, int, int] | None:
        dims = self.input_dims[1:]
        return tuple(dims) if all(isinstance(d, int) for d in dims) and len(dims) == 3 else None

    def forward(self, x: Tensor) -> Tensor:
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        (out,) = self.session.run(None, {self.input_name: arr})[:1]
        return torch.from_numpy(out)

    def infer_num_classes(self, input_shape: tuple[int, int, int]) -> int:
        return int(self.forward(torch.zeros((1, *input_shape))).shape[1])


class CallableBackend:
    """Any Python callable ``fn(x) -> Tensor`` (torch or numpy output) returning ``returns``."""

    def __init__(self, fn: Callable[[Tensor], object], *, returns: OutputMode = "logits",
                 randomized: bool = False, device: str | torch.device = "cpu") -> None:
        if not callable(fn):
            raise InputError(f"expected a callable, got {type(fn).__name__}")
        self.fn = fn
        self.returns = returns
        self.randomized = randomized
        self.device = torch.device(device)

    def forward(self, x: Tensor) -> Tensor:
        out = self.fn(x)
        t = out if isinstance(out, Tensor) else torch.as_tensor(np.asarray(out))
        if self.returns == "label":
            if t.dim() != 1 or t.shape[0] != x.shape[0]:
                raise InputError(f"callable returned labels of shape {tuple(t.shape)}, expected ({x.shape[0]},)")
        elif t.dim() != 2 or t.shape[0] != x.shape[0]:
            raise InputError(f"callable returned {self.returns} of shape {tuple(t.shape)}, expected ({x.shape[0]}, K)")
        return t


__all__ = ["OUTPUT_MODES", "Backend", "CallableBackend", "OnnxBackend", "OutputMode", "TorchBackend",
           "TorchScriptBackend", "module_num_classes"]
