"""options.narrow_choice: typer's str options narrowed to the Literal a library call takes."""

from __future__ import annotations

import pytest

from bbdefense.cli.options import BACKENDS, OUTPUTS, narrow_choice, narrow_optional
from bbdefense.errors import InputError
from bbdefense.models import OUTPUT_MODES


def test_narrow_choice_returns_the_value_and_refuses_others_naming_them():
    assert narrow_choice("onnx", BACKENDS, "--backend") == "onnx"
    assert narrow_optional(None, OUTPUTS, "--output") is None
    assert narrow_optional("label", OUTPUTS, "--output") == "label"
    with pytest.raises(InputError, match=r"--output must be one of logits, probs, label, got 'bogus'"):
        narrow_choice("bogus", OUTPUTS, "--output")
    with pytest.raises(InputError, match=r"--backend must be one of auto, torch, onnx, got 'Torch'"):
        narrow_optional("Torch", BACKENDS, "--backend")


def test_the_cli_output_choices_are_the_models():
    assert OUTPUTS == OUTPUT_MODES
