"""The model-zoo registry: architecture name -> constructor, with its kind.

Kinds and the keyword arguments their constructors take:

* ``classifier``: ``num_classes, in_channels, image_size, mean, std`` (normalisation is the first layer)
* ``denoiser``: ``in_channels`` (image -> image in the same space)
* ``autoencoder``: ``in_channels, image_size`` (returns a module with ``encoder`` and ``decoder``)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from ...errors import InputError
from ...registry import Registry

ModelKind = Literal["classifier", "denoiser", "autoencoder"]


@dataclass(frozen=True)
class ZooEntry:
    name: str
    kind: ModelKind
    build: Callable[..., nn.Module]


MODELS: Registry[ZooEntry] = Registry("architecture")


def register_model(name: str, kind: ModelKind) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a constructor under ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS.add(name, ZooEntry(name, kind, fn))
        return fn

    return deco


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build architecture ``name`` with the keyword arguments of its kind (see module docstring).

    Raises:
        UnknownNameError: ``name`` is not in the zoo.
        InputError: the arguments do not fit the architecture.
    """
    entry = MODELS[name]
    try:
        return entry.build(**kwargs)
    except (TypeError, ValueError) as exc:
        raise InputError(f"cannot build {name!r} with {kwargs}: {exc}") from exc


def classifier_names() -> list[str]:
    return [n for n in MODELS if MODELS[n].kind == "classifier"]
