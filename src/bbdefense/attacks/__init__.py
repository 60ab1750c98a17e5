"""Attacks for evaluation, in the registry :data:`ATTACKS` (name -> class).

Every attack is built from keyword hyperparameters and gets the model and data at run time:
``Attack(**hparams).run(model, x, y, *, target=None) -> AttackResult``. The functional PGD core
(:mod:`bbdefense.training.pgd`) is shared with adversarial training.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import ATTACKS, Attack, AttackResult, is_adversarial, lp_norm, margin_loss, register_attack

for _m in pkgutil.iter_modules(__path__):
    if _m.name not in {"base"} and not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["ATTACKS", "Attack", "AttackResult", "is_adversarial", "lp_norm", "margin_loss", "register_attack"]
