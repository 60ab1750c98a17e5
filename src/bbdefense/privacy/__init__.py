"""Membership inference: threshold attacks (Song & Mittal 2021), shadow models (Shokri et al. 2017),
the label-only gap attack, scikit-learn metrics with a bootstrap AUC interval, and the DUCD Fig. 9
evaluation of targets, distilled surrogates and smoothed classifiers. See ``docs/privacy.md``."""

from .evaluate import ShadowRef, add_report, calibration_split, default_attacks, evaluate_privacy
from .metrics import attack_metrics, bootstrap_auc, tpr_at_fpr
from .overfit import overfit_subset, train_overfit_target
from .shadow import ShadowModelAttack, shadow_features, train_shadow
from .signals import SIGNALS, model_outputs, signal, smoothed_blackbox
from .threshold import GapAttack, MIAttack, ThresholdAttack, best_threshold

__all__ = ["SIGNALS", "GapAttack", "MIAttack", "ShadowModelAttack", "ShadowRef", "ThresholdAttack", "add_report",
           "attack_metrics", "best_threshold", "bootstrap_auc", "calibration_split", "default_attacks",
           "evaluate_privacy", "model_outputs", "overfit_subset", "shadow_features", "signal", "smoothed_blackbox",
           "tpr_at_fpr", "train_overfit_target", "train_shadow"]
