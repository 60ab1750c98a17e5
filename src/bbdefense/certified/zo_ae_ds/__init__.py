"""ZO-AE-DS (Zhang et al., ICLR 2022) and its FO-DS / ZO-DS / FO-AE-DS baselines: :class:`ZOAEDS` (estimator),
training in :mod:`.train`, networks in :mod:`.nets`."""

from .estimator import ZOAEDS

__all__ = ["ZOAEDS"]
