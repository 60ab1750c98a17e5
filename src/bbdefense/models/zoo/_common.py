"""Helpers shared by the zoo families (not an architecture: registers nothing)."""

from __future__ import annotations

from collections.abc import Sequence


def norm_stats(mean: Sequence[float] | None, std: Sequence[float] | None,
               in_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel ``(mean, std)`` for :class:`~bbdefense.models.zoo.Normalize`.

    ``None`` means 0.5 per channel; a single value is repeated over the channels.

    Raises:
        ValueError: ``in_channels`` < 1, or ``mean``/``std`` have neither 1 nor ``in_channels`` values.
    """
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    out = []
    for label, vals in (("mean", mean), ("std", std)):
        v = (0.5,) * in_channels if vals is None else tuple(float(a) for a in vals)
        if len(v) == 1:
            v = v * in_channels
        if len(v) != in_channels:
            raise ValueError(f"{label} has {len(v)} values {list(v)} but the model has {in_channels} "
                             f"input channels")
        out.append(v)
    return out[0], out[1]


def check_image_size(name: str, image_size: int, minimum: int) -> None:
    """Raise ``ValueError`` naming the architecture if ``image_size`` is below ``minimum``."""
    if image_size < minimum:
        raise ValueError(f"{name} needs an image size >= {minimum}, got {image_size}")
