"""Small classifiers for MNIST-sized inputs: SmallCNN and LeNet-5."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .base import ImageClassifier, Normalize
from .registry import register_model


class SmallCNN(ImageClassifier):
    """Two conv blocks (32-32, 64-64, each followed by 2x2 max-pool) and a 128-unit hidden layer;
    the usual small MNIST CNN of the adversarial-robustness literature (Carlini & Wagner 2017 style,
    slimmed for a 2-core CPU).

    Shape: ``(N, C, H, W)`` -> ``(N, num_classes)``; H and W divisible by 4.
    """

    def __init__(self, *, num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
                 mean: Sequence[float] = (0.5,), std: Sequence[float] = (0.5,)) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError(f"SmallCNN needs an image size divisible by 4, got {image_size}")
        self.normalize = Normalize(mean, std)
        s = image_size // 4
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * s * s, 128), nn.ReLU(),
        )
        self.head = nn.Linear(128, num_classes)


class LeNet(ImageClassifier):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling.

    Shape: ``(N, C, H, W)`` -> ``(N, num_classes)``; H = W >= 16.
    """

    def __init__(self, *, num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
                 mean: Sequence[float] = (0.5,), std: Sequence[float] = (0.5,)) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        s = ((image_size // 2) - 4) // 2
        if s < 1:
            raise ValueError(f"LeNet needs an image size >= 12, got {image_size}")
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * s * s, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
        )
        self.head = nn.Linear(84, num_classes)


register_model("smallcnn", "classifier")(SmallCNN)
register_model("lenet", "classifier")(LeNet)
