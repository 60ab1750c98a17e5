"""Owner-side defenses at inference time (registry :data:`DEFENSES`): model wrappers that are
themselves models. See :mod:`bbdefense.defenses.base` for the contract and ``docs/owner-defenses.md``.

* ``rfd``: Randomized Feature Defense (Nguyen et al., ICLR 2024), noise on hidden features.
* ``unig``: UniG (Wu et al. 2022), per-query re-optimised Hadamard module on penultimate features.
* ``rnd`` / ``snd``: random / small noise on the input (Qin et al. 2021; Byun et al. 2022).
* ``aaa``: Adversarial Attack on Attackers (Chen et al., NeurIPS 2022), logit post-processing.
* ``anti_adversary`` (Alfarra et al. 2022) and ``mixup_inference`` (Pang et al. 2020): UniG baselines.

PGD adversarial training, the white-box baseline, is ``bbdefense train --mode pgd``; every defense
here wraps an AT checkpoint like any other model (AT + RFD, AT + UniG).

Third-party defenses (query access only) live in subpackages: :mod:`bbdefense.certified.ducd`
(DUCD), :mod:`bbdefense.certified.zo_ae_ds` and :mod:`bbdefense.certified.irs` (denoised smoothing).
"""

from typing import Any

from torch import nn

from .aaa import AAA, aaa_postprocess, quantize8
from .anti_adversary import AntiAdversary
from .base import DEFENSES, Defense, DefenseStats, register_defense, unwrap
from .calibrate import CalibrationResult, calibrate_noise, mean_accuracy
from .metrics import clean_accuracy, logit_difference
from .mixup_inference import MixupInference
from .rfd import RandomizedFeatureDefense, paper_layers, resolve_layers
from .rnd import RandomNoiseDefense, SmallNoiseDefense
from .unig import UniG, unig_loss


def build_defense(name: str, module: nn.Module, **config: Any) -> Defense:
    """``DEFENSES[name](module, **config)`` with unknown names raising :class:`UnknownNameError`.

    ``config`` is typed ``Any``: it comes from a command line or a JSON spec and each defense checks its own
    hyperparameters (typed errors naming the bad value)."""
    return DEFENSES[name](module, **config)


__all__ = ["AAA", "DEFENSES", "AntiAdversary", "CalibrationResult", "Defense", "DefenseStats", "MixupInference",
           "RandomNoiseDefense", "RandomizedFeatureDefense", "SmallNoiseDefense", "UniG", "aaa_postprocess",
           "build_defense", "calibrate_noise", "clean_accuracy", "logit_difference", "mean_accuracy",
           "paper_layers", "quantize8", "register_defense", "resolve_layers", "unig_loss", "unwrap"]
