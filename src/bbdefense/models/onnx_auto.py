"""The default backend ``"auto"``: the fastest *verified-correct* CPU path for a local torch module.

What runs (:func:`fast_path`, decided once per module and input shape in a process, then cached):

1. **ONNX Runtime** when ``onnxruntime`` and ``onnx`` are installed (the ``[onnx]`` extra) and the module
   exports (``torch.onnx``, opset 17) and the exported graph agrees with eager torch on the probe batch;
2. else **channels_last** (a copy of the module with NHWC weights) when the module has a ``Conv2d`` and that
   copy agrees on the probe batch;
3. else **eager** torch.

Never taken (eager stays): a module on a non-CPU device (both fast paths are CPU paths), a randomized module
(its ``randomized`` attribute: an exported graph would drop its torch randomness), a TorchScript module
(not exported). A model that cannot export (unsupported operator, data-dependent control flow) falls back
to the next path; the reason is recorded. On this project's CPU, ONNX Runtime ran the zoo's CNNs and
ResNets 3-6x faster than eager and channels_last 1.35-1.73x (``benchmarks/certify_fastpath.py``); the
order is fixed rather than timed at run time so the choice does not depend on the machine's load.

**Agreement** (``tol = 1e-5``): every logit of the candidate on the probe batch satisfies
``|fast - eager| <= tol * max(1, |eager|)``: an absolute 1e-5 for logits of magnitude up to 1 (the issue's
"results equal within 1e-5") and a relative 1e-5 above. Why relative there: float32 resolves a logit of
magnitude 30 only to 30 * 2^-24 = 1.8e-6, and any re-ordering of the sums (another kernel, another thread
count, even eager torch on another CPU) accumulates such roundings over a deep net's layers; an absolute
bound would reject exports of deep nets for rounding that eager torch itself does not control (resnet20 with
random weights: logits up to 31, ONNX max diff 1.1e-5 absolute, 2.4e-6 relative). What decides a label is
the gap between the two top logits relative to that rounding, which a relative bound respects. The probe
batch: 16 seeded uniform images and the same images plus Gaussian noise of std 0.5 (randomized smoothing
queries outside [0, 1]), 32 in all.

**When it switches** (:class:`AutoBackend`): queries run eagerly until a forward call would take the
black box past ``warmup`` images (10,000); that call and all later ones run the chosen path. A caller that
knows its plan says so first (:meth:`AutoBackend.expect`): :class:`~bbdefense.certify.Smooth` does before
every certify/predict call, so a certification of ``N (n0 + n) > 10,000`` queries (any Cohen run at
``n = 10,000``) decides before its first query and runs entirely on the fast path, whatever its chunking. Exporting and
probing costs 0.05-0.3 s on the zoo's models, which 10,000 eager queries repay many times (0.5 s for a LeNet,
5-17 s for a SmallCNN or ResNet-20 on one core); below it a run (a test, a quick demo, a few hundred
attack queries) never pays the export and gives eager's exact answers. A run that crosses the threshold
mixes both paths; each answer is within the tolerance of eager's, so labels differ from an all-eager run
only where two logits are within ~1e-5 of each other. ``BlackBox.describe()["backend_info"]`` (and the
``info`` attribute) records what ran: ``path`` (``torch``/``onnx``/``channels_last``), ``decided``,
``switched_after`` (images forwarded eagerly), ``max_abs_diff``, ``max_rel_diff`` and ``tried`` (why
faster paths were not taken). ``backend="torch"`` / ``"onnx"`` force one path.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .backends import OnnxBackend, OutputMode, TorchBackend

AUTO_WARMUP = 10_000
"""Images forwarded eagerly before :class:`AutoBackend` builds and switches to its fast path."""
AUTO_TOL = 1e-5
"""Agreement bound: ``|fast - eager| <= AUTO_TOL * max(1, |eager|)`` per logit (see the module docstring)."""

log = logging.getLogger(__name__)
_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], tuple[Any, dict[str, Any]]]] = \
    weakref.WeakKeyDictionary()


def probe_batch(input_shape: tuple[int, int, int]) -> Tensor:
    """The agreement probe: 16 seeded uniform images, then the same plus N(0, 0.5^2) noise ``(32, *shape)``."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand((16, *input_shape), generator=g)
    return torch.cat([x, x + 0.5 * torch.randn((16, *input_shape), generator=g)])


def agreement(out: Tensor, ref: Tensor, tol: float = AUTO_TOL) -> tuple[bool, float, float]:
    """``(ok, max |out - ref|, max |out - ref| / max(1, |ref|))``; ok iff the last is ``<= tol``."""
    diff = (out.float() - ref.float()).abs()
    rel = float((diff / ref.float().abs().clamp_min(1.0)).max()) if diff.numel() else 0.0
    absd = float(diff.max()) if diff.numel() else 0.0
    ok = tuple(out.shape) == tuple(ref.shape) and bool(torch.isfinite(out).all()) and rel <= tol
    return ok, absd, rel


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]


def fast_path(module: nn.Module, input_shape: tuple[int, int, int], *,
              tol: float = AUTO_TOL) -> tuple[Any, dict[str, Any]]:
    """The fastest backend for ``module`` that agrees with eager within ``tol`` on :func:`probe_batch`, and
    what was decided (``path``, ``max_abs_diff``, ``max_rel_diff``, ``tried``). Cached per module, shape,
    tolerance and torch thread count for the life of the module."""
    key = (tuple(input_shape), float(tol), torch.get_num_threads())
    per = _CACHE.setdefault(module, {})
    if key not in per:
        per[key] = _decide(module, tuple(input_shape), tol)  # type: ignore[arg-type]  # (C, H, W)
    backend, info = per[key]
    return backend, dict(info)


def _decide(module: nn.Module, shape: tuple[int, int, int], tol: float) -> tuple[Any, dict[str, Any]]:
    eager = TorchBackend(module)
    tried: list[str] = []

    def done(backend: Any, path: str, absd: float = 0.0, rel: float = 0.0) -> tuple[Any, dict[str, Any]]:
        return backend, {"path": path, "max_abs_diff": absd, "max_rel_diff": rel, "tol": tol, "tried": tried}

    if eager.device.type != "cpu":
        tried.append(f"module on {eager.device}: ONNX Runtime and channels_last are CPU paths")
        return done(eager, "torch")
    if eager.randomized:
        tried.append("randomized module: an export would drop its randomness")
        return done(eager, "torch")
    x = probe_batch(shape)
    ref = eager.forward(x)
    if isinstance(module, torch.jit.ScriptModule):
        tried.append("onnx: TorchScript modules are not exported")
    elif importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        tried.append("onnx: onnxruntime/onnx not installed (pip install 'bbdefense[onnx]')")
    else:
        try:
            from .onnx_export import export_onnx

            tmp = tempfile.mkdtemp(prefix="bbdefense-auto-")
            weakref.finalize(module, shutil.rmtree, tmp, True)  # the export lives as long as the module
            ob = OnnxBackend(export_onnx(module, Path(tmp) / "model.onnx", shape), threads=torch.get_num_threads())
            ok, absd, rel = agreement(ob.forward(x), ref, tol)
            if ok:
                return done(ob, "onnx", absd, rel)
            tried.append(f"onnx: differs from eager by {absd:.3g} ({rel:.3g} relative) > {tol:g}")
        except Exception as exc:  # any export or runtime failure means: not this path
            tried.append(f"onnx: {_first_line(exc)}")
    if not any(isinstance(m, nn.Conv2d) for m in module.modules()):
        tried.append("channels_last: no Conv2d")
        return done(eager, "torch")
    try:
        cl = TorchBackend(copy.deepcopy(module), memory_format="channels_last")
        ok, absd, rel = agreement(cl.forward(x), ref, tol)
        if ok:
            return done(cl, "channels_last", absd, rel)
        tried.append(f"channels_last: differs from eager by {absd:.3g} ({rel:.3g} relative) > {tol:g}")
    except Exception as exc:
        tried.append(f"channels_last: {_first_line(exc)}")
    return done(eager, "torch")


class AutoBackend:
    """Eager torch for the first ``warmup`` images, then :func:`fast_path` (see the module docstring).

    Forwards exactly like :class:`TorchBackend` (same ``module``, ``device``, ``randomized``,
    :meth:`forward_grad` on the eager module) until a call would take the images forwarded past
    ``warmup``; from that call on :meth:`forward` runs the chosen path. ``warmup=0`` decides on the first
    call. :attr:`info` says what ran.
    """

    returns: OutputMode = "logits"

    def __init__(self, module: nn.Module, input_shape: tuple[int, int, int], *, warmup: int = AUTO_WARMUP,
                 tol: float = AUTO_TOL) -> None:
        self.eager = TorchBackend(module)
        self.active: Any = self.eager
        self.input_shape = tuple(int(v) for v in input_shape)
        self.warmup, self.tol = int(warmup), float(tol)
        self.forwarded = 0
        self.info: dict[str, Any] = {"requested": "auto", "path": "torch", "decided": False, "warmup": self.warmup,
                                     "tol": self.tol}

    @property
    def module(self) -> nn.Module:
        return self.eager.module

    @property
    def backend_info(self) -> dict[str, Any]:
        """:attr:`info`, under the name ``BlackBox.describe`` reads."""
        return self.info

    @property
    def randomized(self) -> bool:
        return self.eager.randomized

    @property
    def device(self) -> torch.device:
        return self.eager.device

    def decide(self) -> dict[str, Any]:
        """Choose the path now (export and probe, or the cached choice); returns :attr:`info`."""
        if not self.info["decided"]:
            self.active, chosen = fast_path(self.eager.module, self.input_shape, tol=self.tol)  # type: ignore[arg-type]
            self.info.update(chosen, decided=True, switched_after=self.forwarded)
            log.info("backend auto: %s after %d eager images (max |diff| %.2g; %s)", chosen["path"], self.forwarded,
                     chosen["max_abs_diff"], "; ".join(chosen["tried"]) or "fastest path")
        return self.info

    def expect(self, images: int) -> None:
        """A caller is about to send ``images`` images (:class:`~bbdefense.certify.Smooth` says so before each
        certify/predict call): decide now when they would take the count past ``warmup``, so that the whole
        call runs on one path."""
        if not self.info["decided"] and self.forwarded + int(images) > self.warmup:
            self.decide()

    def forward(self, x: Tensor) -> Tensor:
        n = int(x.shape[0])
        if not self.info["decided"] and self.forwarded + n > self.warmup:
            self.decide()
        self.forwarded += n
        return self.active.forward(x)

    def forward_grad(self, x: Tensor) -> Tensor:
        return self.eager.forward_grad(x)

    def infer_num_classes(self, input_shape: tuple[int, int, int]) -> int:
        return self.eager.infer_num_classes(input_shape)


__all__ = ["AUTO_TOL", "AUTO_WARMUP", "AutoBackend", "agreement", "fast_path", "probe_batch"]
