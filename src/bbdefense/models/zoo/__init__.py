"""Model zoo: architectures defined in this project (no torchvision), trained by this project.

Importing this package registers every architecture in :data:`MODELS`.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import ImageClassifier, Normalize
from .registry import MODELS, ZooEntry, build_model, classifier_names, register_model

# Register every architecture module in this package (one file per family).
for _m in pkgutil.iter_modules(__path__):
    if _m.name not in {"base", "registry"}:
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["MODELS", "ImageClassifier", "Normalize", "ZooEntry", "build_model", "classifier_names", "register_model"]
