"""bbdefense: black-box adversarial defense of image classifiers.

Public surface: :class:`~bbdefense.models.BlackBox` (the query-counted oracle) and
:class:`~bbdefense.models.WhiteBox`, the typed errors, datasets (:func:`~bbdefense.data.load_dataset`)
and the model zoo. Subpackages: ``models``, ``data``, ``training``, ``attacks``, ``certify``,
``defenses``, ``privacy``, ``records``, ``experiments``, ``serve``, ``cli``.
"""

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
from .models import BlackBox, WhiteBox

__version__ = "0.1.0"

__all__ = ["AccessError", "BBDefenseError", "BlackBox", "CheckpointError", "ConfigError", "DataError", "InputError",
           "QueryBudgetExceeded", "RemoteError", "UnknownNameError", "WhiteBox", "__version__"]
