"""The name registry behind every `--arch`, `--dataset`, `--attack`, `--noise`..."""

from __future__ import annotations

import pytest

from bbdefense import InputError, UnknownNameError
from bbdefense.registry import Registry


def test_registry_lookup_membership_and_errors():
    reg: Registry[int] = Registry("widget")
    reg.add("b", 2)
    reg.register("a")(1)
    assert list(reg) == ["a", "b"] and len(reg) == 2 and reg["a"] == 1
    assert "a" in reg and "zzz" not in reg  # membership never raises
    with pytest.raises(UnknownNameError, match="unknown widget 'c'; choose one of: a, b"):
        reg["c"]
    with pytest.raises(InputError, match="widget 'a' is already registered"):
        reg.add("a", 5)
