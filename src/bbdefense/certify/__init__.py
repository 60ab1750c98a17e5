"""Certification by randomized smoothing: Cohen PREDICT/CERTIFY over any black box, noise families
with closed-form radii for l1/l2/linf, the numerical (DUCD/UniCR) method, metrics, noise selection
and purification. See docs/certification.md."""

from .noises import NOISES, NORMS, Noise, convert_radius, make_noise
from .smooth import Certificate, Smooth
from .stats import binom_pvalue, cp_lower, cp_upper

__all__ = ["NOISES", "NORMS", "Certificate", "Noise", "Smooth", "binom_pvalue", "convert_radius", "cp_lower",
           "cp_upper", "make_noise"]
