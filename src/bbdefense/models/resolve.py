"""One resolver for what a command works on: a model spec -> a query-counted :class:`BlackBox`, or the
torch module behind it for the commands that need one.

A spec is one of five kinds (``bbdefense ... --model SPEC``):

==============  ==========================================  ==========  ============================
kind            spec                                        black box   module (white box, training)
==============  ==========================================  ==========  ============================
``checkpoint``  ``X``, ``X.safetensors`` or ``X.json``      yes         yes (records split seed)
``onnx``        ``model.onnx``                              yes         no
``torchscript`` ``model.pt`` / ``.ts`` / ``.pth``           yes         yes (a ScriptModule)
``url``         ``http(s)://host:port`` of bbdefense serve  yes         no
``factory``     ``package.module:factory``                  yes         yes
==============  ==========================================  ==========  ============================

A **factory** is a callable that takes no argument and returns an ``nn.Module`` mapping ``(N, C, H, W)``
images in [0, 1] to ``(N, K)`` logits. The module (or, failing that, the factory itself) may carry the
attributes ``input_shape`` ``(C, H, W)`` (required when it cannot be given otherwise), ``num_classes``
(else one forward pass on zeros tells), ``dataset`` and ``split_seed`` (the data it was trained on,
which then plays the role of a checkpoint's record) and ``arch`` (a zoo name, for the commands that
retrain the architecture). ``package.module`` is imported as usual; when that fails, the current
folder is tried too (as ``uvicorn app:app`` does).

A TorchScript file's input shape comes from ``input_shape=`` or a ``.json`` sidecar next to it
(``{"input_shape": [C, H, W]}``). ``backend="auto"`` (the default) runs a checkpoint or a factory module
on CPU eagerly for its first 10,000 images, then on the fastest path that agrees with eager torch within
1e-5 (ONNX Runtime, else channels_last, else eager; :mod:`bbdefense.models.onnx_auto`);
``backend="torch"`` always eager, ``backend="onnx"`` always onnxruntime (exported once to a temporary
file). An ``.onnx`` file always runs on onnxruntime, a TorchScript file on torch and a URL on its server.

Every bad spec is one :class:`ModelSpecError` (an :class:`InputError`, also a
:class:`CheckpointError` for the file kinds) naming the spec; asking for the module of a kind that has
none raises :class:`ModelKindError`, naming the command, the kind given and the kinds it accepts.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

import torch
from torch import nn

from ..errors import AccessError, CheckpointError, InputError
from .blackbox import BlackBox, OutputMode, WhiteBox

ModelKind = Literal["checkpoint", "onnx", "torchscript", "url", "factory"]
BackendName = Literal["auto", "torch", "onnx"]
KINDS: tuple[str, ...] = get_args(ModelKind)
MODULE_KINDS: tuple[str, ...] = ("checkpoint", "torchscript", "factory")
"""The kinds that have a torch module (white-box access, defenses that wrap the module, retraining)."""
TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".pth")
KIND_LABELS = {"checkpoint": "a checkpoint", "onnx": "an ONNX file (kind onnx)",
               "torchscript": "a TorchScript file (kind torchscript)", "url": "a server URL (kind url)",
               "factory": "a package.module:factory (kind factory)"}
_FACTORY = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
SPEC_HELP = ("a checkpoint (X, X.safetensors or X.json), an .onnx file, a TorchScript .pt/.ts/.pth file, an "
             "http(s):// URL of a bbdefense server, or package.module:factory")


class ModelSpecError(InputError, CheckpointError):
    """A model spec that cannot be opened: missing file, unknown suffix, bad URL, module not importable,
    factory not callable or not returning a module."""


class ModelKindError(InputError, AccessError):
    """A command needs what this kind of model does not have (e.g. the torch module of an ``.onnx`` file)."""


class LoadedModule(NamedTuple):
    """The torch module behind a spec and its metadata: a checkpoint's own, or ``{"input_shape",
    "num_classes"}`` (plus ``dataset`` / ``arch`` / ``train.split_seed`` where a factory declares them)."""

    module: nn.Module
    meta: dict[str, Any]


def _factory_attr(module: object, factory: object, name: str) -> Any:
    value = getattr(module, name, None)
    return value if value is not None else getattr(factory, name, None)


@dataclass(frozen=True)
class ModelSource:
    """A classified model spec (see the module docstring); build one with :func:`model_source`."""

    spec: str
    kind: ModelKind
    _cache: list[tuple[nn.Module, dict[str, Any]]] = field(default_factory=list, compare=False, repr=False)

    @property
    def path(self) -> Path:
        return Path(self.spec)

    @property
    def name(self) -> str:
        """A short label for records (a file's stem, the URL, the factory's name)."""
        if self.kind in ("url", "factory"):
            return self.spec
        p = self.path
        return p.with_suffix("").name if p.suffix in (".safetensors", ".json") else p.stem

    @property
    def has_module(self) -> bool:
        return self.kind in MODULE_KINDS

    # ------------------------------------------------------------------ metadata (no weights loaded)
    def meta(self) -> dict[str, Any] | None:
        """The checkpoint's metadata (the split seed it was trained with, its dataset...); what a factory
        declares (``dataset``, ``split_seed``, ``arch``) for a factory; ``None`` for the kinds that record
        nothing (ONNX, TorchScript, URL)."""
        if self.kind == "checkpoint":
            from .checkpoint import read_meta

            return read_meta(self.spec)
        if self.kind == "factory":
            return self._factory_module()[1]
        return None

    # ------------------------------------------------------------------ the module
    def module(self, command: str, *, accepts: tuple[str, ...] = MODULE_KINDS,
               device: str | torch.device = "cpu", input_shape: tuple[int, int, int] | None = None) -> LoadedModule:
        """``(module, meta)`` for a command that needs the module (white-box access, a defense wrapping
        it, retraining its architecture). ``accepts``: the kinds ``command`` takes; another kind raises
        :class:`ModelKindError` naming all three."""
        if self.kind not in accepts or self.kind not in MODULE_KINDS:
            ok = [k for k in accepts if k in MODULE_KINDS]
            why = "" if self.kind in MODULE_KINDS else ", which has no torch module"
            raise ModelKindError(f"{command} needs the model's torch module; {self.spec} is "
                                 f"{KIND_LABELS[self.kind]}{why}; {command} accepts: {', '.join(ok)}")
        if self.kind == "checkpoint":
            from .checkpoint import load_checkpoint

            module, meta = load_checkpoint(self.spec, device=device)
            if meta.get("kind", "classifier") != "classifier":
                raise ModelSpecError(f"{self.spec} holds a {meta.get('kind')}, not a classifier")
            return LoadedModule(module, meta)
        if self.kind == "torchscript":
            from .backends import TorchScriptBackend

            tb = TorchScriptBackend(self.path, device=device)
            shape = input_shape or self._sidecar_shape()
            return LoadedModule(tb.module, {"input_shape": list(shape), "num_classes": tb.infer_num_classes(shape)})
        module, meta = self._factory_module()
        return LoadedModule(module.to(device), meta)

    def _sidecar_shape(self) -> tuple[int, int, int]:
        side = self.path.with_suffix(".json")
        if not side.is_file():
            raise ModelSpecError(f"pass input_shape for TorchScript file {self.path.name} (or write "
                                 f"{side.name} with {{\"input_shape\": [C, H, W]}} next to it)")
        try:
            shape = tuple(int(v) for v in json.loads(side.read_text())["input_shape"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelSpecError(f"{side}: expected JSON with 'input_shape' [C, H, W]: {exc}") from None
        if len(shape) != 3 or min(shape) < 1:
            raise ModelSpecError(f"{side}: input_shape must be [C, H, W] of positive integers, got {list(shape)}")
        return shape

    def _factory_module(self) -> tuple[nn.Module, dict[str, Any]]:
        if self._cache:
            return self._cache[0]
        mod_name, _, fn_name = self.spec.partition(":")
        mod = _import(mod_name, self.spec)
        if not hasattr(mod, fn_name):
            raise ModelSpecError(f"--model {self.spec}: module {mod_name!r} has no attribute {fn_name!r}")
        factory = getattr(mod, fn_name)
        if not callable(factory):
            raise ModelSpecError(f"--model {self.spec}: {fn_name!r} is a {type(factory).__name__}, not a callable "
                                 "factory")
        try:
            module = factory()
        except TypeError as exc:
            raise ModelSpecError(f"--model {self.spec}: the factory must be callable without arguments: "
                                 f"{exc}") from None
        if not isinstance(module, nn.Module):
            raise ModelSpecError(f"--model {self.spec}: the factory returned a {type(module).__name__}, not a "
                                 "torch nn.Module")
        module.eval()
        shape = _factory_attr(module, factory, "input_shape")
        if shape is None:
            raise ModelSpecError(f"--model {self.spec}: give the module (or the factory) an input_shape attribute "
                                 "(C, H, W)")
        try:
            shape_t = tuple(int(v) for v in shape)
        except (TypeError, ValueError):
            shape_t = ()
        if len(shape_t) != 3 or min(shape_t) < 1:
            raise ModelSpecError(f"--model {self.spec}: input_shape must be (C, H, W) of positive integers, got "
                                 f"{shape!r}")
        k = _factory_attr(module, factory, "num_classes")
        if k is None:
            from .backends import TorchBackend

            k = TorchBackend(module).infer_num_classes(shape_t)
        meta: dict[str, Any] = {"input_shape": list(shape_t), "num_classes": int(k)}
        for key in ("dataset", "arch"):
            if _factory_attr(module, factory, key) is not None:
                meta[key] = str(_factory_attr(module, factory, key))
        seed = _factory_attr(module, factory, "split_seed")
        if seed is not None:
            meta["train"] = {"split_seed": int(seed)}
        self._cache.append((module, meta))  # the factory runs once per source
        return module, meta

    def whitebox(self, command: str, *, accepts: tuple[str, ...] = MODULE_KINDS, device: str | torch.device = "cpu",
                 budget: int | None = None, input_shape: tuple[int, int, int] | None = None) -> WhiteBox:
        """A query-counted :class:`WhiteBox` (differentiable logits) for the kinds with a module; other kinds
        raise :class:`ModelKindError` naming ``command``."""
        module, meta = self.module(command, accepts=accepts, device=device, input_shape=input_shape)
        return WhiteBox(module, num_classes=int(meta["num_classes"]), input_shape=tuple(meta["input_shape"]),
                        budget=budget, name=self.name)

    # ------------------------------------------------------------------ the black box
    def blackbox(self, *, backend: BackendName = "auto", output: OutputMode | None = None, top_k: int | None = None,
                 budget: int | None = None, api_key: str | None = None, device: str | torch.device = "cpu",
                 input_shape: tuple[int, int, int] | None = None, log_queries: bool = False,
                 audit_budget: int | None = None) -> BlackBox:
        """A query-counted black box of any kind. ``output`` defaults to ``"logits"`` locally and to the
        server's mode for a URL; ``api_key`` (or ``$BBDEFENSE_API_KEY``) is sent to a URL's server.
        ``backend``: see the module docstring (``"auto"`` falls back to what the kind allows)."""
        if backend not in ("auto", "torch", "onnx"):
            raise InputError(f"unknown backend {backend!r}; choose auto, torch or onnx")
        if self.kind == "url":
            if backend == "onnx":
                raise InputError(f"--backend onnx does not apply to a URL (the server at {self.spec} runs the model)")
            from .remote import HttpBlackBox

            bb: BlackBox = HttpBlackBox(self.spec, api_key or os.environ.get("BBDEFENSE_API_KEY"), output=output,
                                        top_k=top_k, budget=budget, log_queries=log_queries)
            bb.audit_budget = audit_budget
            return bb
        kw: dict[str, Any] = {"output": output or "logits", "top_k": top_k, "budget": budget,
                              "log_queries": log_queries, "name": self.name, "audit_budget": audit_budget}
        from .backends import OnnxBackend, TorchBackend

        if self.kind == "onnx":
            ob = OnnxBackend(self.path)
            shape = input_shape or ob.input_shape
            if shape is None:
                raise ModelSpecError(f"{self.path.name} has no fixed input shape; pass input_shape")
            return BlackBox(ob, num_classes=ob.infer_num_classes(shape), input_shape=shape, **kw)
        if self.kind == "checkpoint":
            from .checkpoint import read_meta

            meta = read_meta(self.spec)
            if meta.get("kind", "classifier") != "classifier":
                raise ModelSpecError(f"{self.spec} holds a {meta.get('kind')}, not a classifier")
            if not meta.get("input_shape") or not meta.get("num_classes"):
                raise ModelSpecError(f"{self.spec}: its metadata lacks input_shape or num_classes, which a black "
                                     "box needs")
        if self.kind == "torchscript" and backend == "onnx":
            raise InputError(f"--backend onnx needs a checkpoint or a factory; {self.spec} is TorchScript (export it "
                             "to ONNX yourself and pass the .onnx file)")
        module, meta = self.module("open", input_shape=input_shape, device="cpu" if backend == "onnx" else device)
        shape = tuple(meta["input_shape"])
        if backend == "onnx":
            from .onnx_export import export_onnx

            onnx_path = Path(tempfile.mkdtemp(prefix="bbdefense-onnx-")) / f"{self.name}.onnx"
            export_onnx(module, onnx_path, shape)
            return BlackBox(OnnxBackend(onnx_path), num_classes=int(meta["num_classes"]), input_shape=shape, **kw)
        if backend == "auto" and self.kind != "torchscript" and torch.device(device).type == "cpu":
            from .onnx_auto import AutoBackend

            return BlackBox(AutoBackend(module, shape), num_classes=int(meta["num_classes"]),
                            input_shape=shape, **kw)
        # TorchBackend's read-only properties do not match the Protocol's plain attributes (mypy only)
        return BlackBox(TorchBackend(module), num_classes=int(meta["num_classes"]), input_shape=shape,
                        **kw)


def _import(mod_name: str, spec: str) -> Any:
    """Import ``mod_name``; when that fails, once more with the current folder on ``sys.path``."""
    try:
        return importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        first = exc
        cwd = os.getcwd()
        if cwd not in sys.path and (exc.name or "").split(".")[0] == mod_name.split(".")[0]:
            sys.path.insert(0, cwd)
            try:
                return importlib.import_module(mod_name)
            except ModuleNotFoundError:
                sys.path.remove(cwd)
            except Exception as exc2:
                raise ModelSpecError(f"--model {spec}: importing {mod_name!r} failed: {type(exc2).__name__}: "
                                     f"{exc2}") from None
        raise ModelSpecError(f"--model {spec}: module {mod_name!r} cannot be imported ({first})") from None
    except Exception as exc:
        raise ModelSpecError(f"--model {spec}: importing {mod_name!r} failed: {type(exc).__name__}: {exc}") from None


def _check_url(spec: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(spec)
    if parts.scheme not in ("http", "https"):
        raise ModelSpecError(f"--model {spec}: unsupported URL scheme {parts.scheme!r}; a model URL is the "
                             "http:// or https:// address of a bbdefense server")
    try:
        port = parts.port
    except ValueError:
        raise ModelSpecError(f"--model {spec}: bad port in the URL") from None
    if not parts.hostname or port == 0:
        raise ModelSpecError(f"--model {spec}: the URL names no host; expected e.g. http://127.0.0.1:8000")
    if parts.query or parts.fragment:
        raise ModelSpecError(f"--model {spec}: a model URL is the server's base address, without ?query or #fragment")


def model_source(spec: str | Path) -> ModelSource:
    """Classify ``spec`` (see the module docstring) and check it exists; :class:`ModelSpecError` otherwise."""
    s = str(spec).strip()
    if not s:
        raise ModelSpecError(f"--model is empty; give {SPEC_HELP}")
    if "://" in s:
        _check_url(s)
        return ModelSource(s.rstrip("/"), "url")
    if re.match(r"^https?:/[^/]", s):
        raise ModelSpecError(f"--model {s}: looks like a URL with one slash; write {s.replace(':/', '://', 1)}")
    p = Path(s).expanduser()
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        if not p.is_file():
            raise ModelSpecError(f"ONNX file not found: {p}")
        return ModelSource(str(p), "onnx")
    if suffix in TORCHSCRIPT_SUFFIXES:
        if not p.is_file():
            raise ModelSpecError(f"TorchScript file not found: {p}")
        return ModelSource(str(p), "torchscript")
    from .checkpoint import checkpoint_paths

    wpath, mpath = checkpoint_paths(p)
    if wpath.is_file() or mpath.is_file():
        return ModelSource(str(p), "checkpoint")
    if _FACTORY.match(s) and not p.exists():
        return ModelSource(s, "factory")
    if p.is_dir():
        raise ModelSpecError(f"--model {s} is a folder holding no checkpoint; give {SPEC_HELP}")
    if p.exists():
        raise ModelSpecError(f"--model {s}: unknown model file suffix {p.suffix!r}; give {SPEC_HELP}")
    raise ModelSpecError(f"model not found: {s} (no {wpath.name} or {mpath.name}); give {SPEC_HELP}")


def resolve_blackbox(spec: str | Path, **kw: Any) -> BlackBox:
    """``model_source(spec).blackbox(**kw)``: the black box of any kind (query-only commands)."""
    return model_source(spec).blackbox(**kw)


def resolve_module(spec: str | Path, command: str, *, accepts: tuple[str, ...] = MODULE_KINDS,
                   **kw: Any) -> LoadedModule:
    """``model_source(spec).module(command, accepts=...)``: the torch module (commands that need it)."""
    return model_source(spec).module(command, accepts=accepts, **kw)


def describe_model(spec: str | Path, *, api_key: str | None = None) -> dict[str, Any]:
    """What ``bbdefense info --model`` prints: a checkpoint's metadata (without library versions), else the
    kind and the black box's description (shape, classes, output; a URL's server info)."""
    src = model_source(spec)
    if src.kind == "checkpoint":
        meta = dict(src.meta() or {})
        meta.pop("versions", None)
        return meta
    return {"kind": src.kind, **src.blackbox(api_key=api_key).describe()}


def model_meta(spec: str | Path | None) -> dict[str, Any] | None:
    """The recorded metadata of ``spec`` (checkpoint, or what a factory declares); ``None`` for nothing or a
    kind that records none. Used to resolve the data split a model is evaluated on."""
    return None if spec is None else model_source(spec).meta()


__all__ = ["KINDS", "MODULE_KINDS", "SPEC_HELP", "BackendName", "LoadedModule", "ModelKind", "ModelKindError",
           "ModelSource", "ModelSpecError", "describe_model", "model_meta", "model_source", "resolve_blackbox",
           "resolve_module"]
