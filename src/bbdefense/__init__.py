"""bbdefense: black-box adversarial defense of image classifiers.

Public surface: :class:`~bbdefense.models.BlackBox` (the query-counted oracle) and
:class:`~bbdefense.models.WhiteBox`, the typed errors, datasets (:func:`~bbdefense.data.load_dataset`)
and the model zoo. Subpackages: ``models``, ``data``, ``training``, ``attacks``, ``certify``,
``defenses``, ``privacy``, ``records``, ``experiments``, ``serve``, ``cli``.
"""

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    AccessError,
    BBDefenseError,
    CheckpointError,
    ConfigError,
    DataError,
    InputError,
    QueryBudgetExceeded,
    RemoteError,
    UnknownNameError,
)

if TYPE_CHECKING:
    from .models import BlackBox, WhiteBox


def __getattr__(name: str) -> Any:
    """``BlackBox`` and ``WhiteBox`` on first use: ``import bbdefense`` (and so ``bbdefense --help``) does not
    import torch."""
    if name in ("BlackBox", "WhiteBox"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'bbdefense' has no attribute {name!r}")


__all__ = ["AccessError", "BBDefenseError", "BlackBox", "CheckpointError", "ConfigError", "DataError", "InputError",
           "QueryBudgetExceeded", "RemoteError", "UnknownNameError", "WhiteBox", "__version__"]
