"""Training of zoo classifiers (plain, Gaussian augmentation, PGD adversarial training) and the
target-model helper used by the CLI and the demo."""

from .target import train_target
from .train import TRAIN_MODES, TrainConfig, TrainResult, accuracy, train_classifier

__all__ = ["TRAIN_MODES", "TrainConfig", "TrainResult", "accuracy", "train_classifier", "train_target"]
