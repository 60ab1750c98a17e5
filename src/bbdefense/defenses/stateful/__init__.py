"""Stateful defenses at the API: per-account detectors of query attacks (registry :data:`DETECTORS`).

The contract is :class:`StatefulDetector` (:mod:`.base`): ``observe(account, images) -> decisions``,
state persisted in SQLite. Members: :class:`Blacklight` (Li et al., USENIX Security 2022) and
:class:`PIHA` (Choi et al., Computers & Security 2023). ``bbdefense serve --detector NAME`` runs one in
front of the served model; ``bbdefense evaluate-detector`` measures it; docs/stateful-defense.md.
"""

from .base import DETECTORS, Decision, StatefulDetector, make_detector
from .blacklight import PRESETS, Blacklight
from .piha import PIHA

__all__ = ["DETECTORS", "PIHA", "PRESETS", "Blacklight", "Decision", "StatefulDetector", "make_detector"]
