"""VGG-16 / VGG-19 with batch normalisation for 32x32 inputs (Simonyan & Zisserman, ICLR 2015,
configurations D and E; BN after every conv as in Ioffe & Szegedy 2015). The CIFAR variant (as in
kuangliu/pytorch-cifar ``models/vgg.py``, commit 49b7aa9, the VGG used by IRS-Net's Table I) replaces
the three 4096-wide fully connected layers by one linear layer on the 512 pooled features.

Two changes so that every input size works: the 2x2 max-pools use ``ceil_mode=True`` (28 -> 14 -> 7 ->
4 -> 2 -> 1 for MNIST; 32x32 is unchanged) and a global average pool precedes the linear layer
(96x96 STL-10 ends at 3x3). Neither adds parameters: VGG-16 has 14,728,266 and VGG-19 20,040,522
for 10 classes and 3 channels, the counts of the CIFAR VGG-BN of the reference.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from torch import nn

from ._common import norm_stats
from .base import ImageClassifier, Normalize
from .registry import register_model

CONFIGS: dict[str, list[list[int]]] = {
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "vgg19": [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]],
}


class VGG(ImageClassifier):
    """CIFAR VGG with BN.

    ``body`` is ``layer1 .. layer5 -> pool -> flatten`` where ``layer{i}`` is the i-th block of
    (conv3x3-BN-ReLU) x k followed by a 2x2 max-pool; 512 penultimate features.

    Args:
        config: ``"vgg16"`` or ``"vgg19"`` (filters per block, see :data:`CONFIGS`).
        num_classes, in_channels, image_size, mean, std: the zoo's classifier arguments.

    Shape: ``(N, in_channels, H, W)`` in [0, 1] -> logits ``(N, num_classes)``.
    """

    def __init__(self, config: str = "vgg16", *, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__()
        if config not in CONFIGS:
            raise ValueError(f"unknown VGG config {config!r}; choose one of {sorted(CONFIGS)}")
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        self.normalize = Normalize(*norm_stats(mean, std, in_channels))
        stages: list[tuple[str, nn.Module]] = []
        c = in_channels
        for i, widths in enumerate(CONFIGS[config]):
            layers: list[nn.Module] = []
            for w in widths:
                layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
                c = w
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            stages.append((f"layer{i + 1}", nn.Sequential(*layers)))
        stages += [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten())]
        self.body = nn.Sequential(OrderedDict(stages))
        self.head = nn.Linear(c, num_classes)


@register_model("vgg16", "classifier")
def vgg16(**kwargs: Any) -> VGG:
    """CIFAR VGG-16-BN: 14,728,266 parameters for 10 classes."""
    return VGG("vgg16", **kwargs)


@register_model("vgg19", "classifier")
def vgg19(**kwargs: Any) -> VGG:
    """CIFAR VGG-19-BN: 20,040,522 parameters for 10 classes."""
    return VGG("vgg19", **kwargs)
