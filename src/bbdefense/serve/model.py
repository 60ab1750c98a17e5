"""What ``bbdefense serve`` serves: a checkpoint, optionally wrapped in an owner-side defense.

Defenses come from the owner-side registry ``bbdefense.defenses.DEFENSES`` (looked up lazily, so
serving works before or without it): ``DEFENSES[name](module, **config)`` is an ``nn.Module``
wrapping the target module (``randomized`` attribute, ``seed`` keyword).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError, UnknownNameError
from ..models.blackbox import BlackBox, OutputMode
from ..models.loading import BackendName


def resolve_defense(name: str, registry: Mapping[str, Any] | None = None) -> Callable[..., Any]:
    """``registry[name]`` (default ``bbdefense.defenses.DEFENSES``), with a clear error when unknown."""
    if registry is None:
        try:
            from ..defenses import DEFENSES
        except ImportError as exc:
            raise UnknownNameError(f"unknown defense {name!r}: the defense registry (bbdefense.defenses.DEFENSES) "
                                   f"is not available in this installation ({exc})") from None
        registry = DEFENSES
    try:  # a bbdefense Registry raises UnknownNameError listing the choices; a plain dict raises KeyError
        return registry[name]
    except KeyError:
        raise UnknownNameError(f"unknown defense {name!r}; choose one of: "
                               f"{', '.join(sorted(registry)) or '(none)'}") from None


def load_defense_config(path: str | Path | None) -> dict[str, Any]:
    """Keyword arguments for a defense from a JSON or YAML file (None -> ``{}``)."""
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"defense config file not found: {p}")
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            obj = yaml.safe_load(p.read_text())
        else:
            obj = json.loads(p.read_text())
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError
        raise ConfigError(f"defense config {p} cannot be parsed: {exc}") from None
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise ConfigError(f"defense config {p} must hold a mapping of keyword arguments, got {type(obj).__name__}")
    return obj


def build_served_blackbox(model: str | Path, *, defense: str | None = None,
                          defense_config: Mapping[str, Any] | None = None, output: OutputMode = "probs",
                          top_k: int | None = None, backend: BackendName = "torch", device: str = "cpu",
                          registry: Mapping[str, Any] | None = None) -> BlackBox:
    """The black box to serve: ``model`` (any kind of :func:`~bbdefense.models.model_source` but a URL), wrapped
    in ``defense`` when given.

    Raises:
        UnknownNameError: unknown defense name. ConfigError: the defense rejects its config.
        InputError: a defense with ``backend="onnx"`` (defenses wrap the torch module).
    """
    from ..models.resolve import KINDS, ModelKindError, model_source

    src = model_source(model)
    if src.kind == "url":
        raise ModelKindError(f"serve serves a local model; --model {model} is a server URL; serve accepts: "
                             + ", ".join(k for k in KINDS if k != "url"))
    if defense is None:
        return src.blackbox(backend=backend, output=output, top_k=top_k, device=device)
    if backend == "onnx":  # "auto" serves a defense on its torch module
        raise InputError(f"--defense wraps the torch module; use backend 'torch', got {backend!r}")
    factory = resolve_defense(defense, registry)
    module, meta = src.module(f"serve --defense {defense}", device=device)
    try:
        wrapped = factory(module, **dict(defense_config or {}))
    except TypeError as exc:
        raise ConfigError(f"defense {defense!r} rejected its config {dict(defense_config or {})}: {exc}") from None
    return BlackBox.from_module(wrapped, num_classes=meta["num_classes"], input_shape=tuple(meta["input_shape"]),
                                output=output, top_k=top_k, name=f"{Path(str(model)).stem}+{defense}")


__all__ = ["build_served_blackbox", "load_defense_config", "resolve_defense"]
