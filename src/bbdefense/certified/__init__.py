"""Certified defenses of a third-party black box: the defender has only query access to the target and
builds a smoothed classifier around it (DUCD: a distilled surrogate, ZO-AE-DS: a denoiser trained with
zeroth-order gradients, IRS-Net: a UNet denoiser trained on a surrogate). Owner-side, inference-time
defenses (RFD, UniG, ...) are in :mod:`bbdefense.defenses`.

Each defense is an estimator (:class:`CertifiedDefense`, scikit-learn shape) registered in
:data:`CERTIFIED` by name (``ducd``, ``zo-ae-ds``, ``irs-net``)::

    est = CERTIFIED["ducd"](budget=5000, sigma=0.25).fit(blackbox, defender_data)
    certs = est.certify(x, n0=100, n=1000)
    est.save("runs/ducd/defense"); est = load_defense("runs/ducd/defense")
"""

from .base import CERTIFIED, CertifiedDefense, NotFittedError, load_defense
from .ducd.estimator import DUCD
from .irs.estimator import IRSNet
from .zo_ae_ds.estimator import ZOAEDS

__all__ = ["CERTIFIED", "DUCD", "ZOAEDS", "CertifiedDefense", "IRSNet", "NotFittedError", "load_defense"]
