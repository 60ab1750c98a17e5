"""Training: the one optimiser loop of bbdefense (:func:`fit`, step functions), training of zoo
classifiers (plain, Gaussian/noise augmentation, PGD adversarial training) and the target-model helper
used by the CLI and the demo."""

from .loop import FitResult, OptimConfig, StepOutput, fit, make_optimizer
from .target import train_target
from .train import TRAIN_MODES, TrainConfig, TrainResult, accuracy, classifier_step, train_classifier

__all__ = ["TRAIN_MODES", "FitResult", "OptimConfig", "StepOutput", "TrainConfig", "TrainResult", "accuracy",
           "classifier_step", "fit", "make_optimizer", "train_classifier", "train_target"]
