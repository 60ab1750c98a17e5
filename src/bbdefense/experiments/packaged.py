"""The example experiment configs shipped inside the package (``bbdefense/experiments/examples/*.yaml``, the
files of the repository's ``configs/``), so ``bbdefense run --example quick`` works from a wheel, without a
checkout."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import UnknownNameError


def example_names() -> list[str]:
    """The names of the packaged example configs (``quick``, ...)."""
    root = resources.files(__package__) / "examples"
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


def example_path(name: str) -> Path:
    """The packaged example config ``name`` (with or without ``.yaml``) as a file path."""
    stem = name.removesuffix(".yaml")
    names = example_names()
    if stem not in names:
        raise UnknownNameError(f"unknown example config {name!r}; choose from {', '.join(names)}")
    return Path(str(resources.files(__package__) / "examples" / f"{stem}.yaml"))


__all__ = ["example_names", "example_path"]
