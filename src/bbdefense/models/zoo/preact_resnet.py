"""Pre-activation ResNet-18 (He et al., ECCV 2016, "Identity Mappings in Deep Residual Networks"),
CIFAR stem: 3x3 stride-1 conv with 64 filters, four stages of two pre-activation basic blocks
(64-128-256-512, strides 1, 2, 2, 2), a final BN-ReLU, global average pooling, one linear layer.

The final BN-ReLU is the paper's ("an extra activation after the last addition") and is in the
PreActResNet-18 of Wong et al. 2020 / Rice et al. 2020 used for adversarial training; the
kuangliu/pytorch-cifar version (commit 49b7aa9) omits it (1,024 parameters fewer). Parameter count for
10 classes and 3 channels: 11,172,170.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ._common import norm_stats
from .base import ImageClassifier, Normalize
from .registry import register_model


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus the shortcut; the projection shortcut (1x1 conv) takes
    the pre-activated input, as in the paper.

    Shape: ``(N, in_planes, H, W)`` -> ``(N, planes, ceil(H/stride), ceil(W/stride))``.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + skip


class PreActResNet(ImageClassifier):
    """Pre-activation ResNet with the CIFAR stem.

    ``body`` is ``conv1 -> layer1 .. layer4 -> bn -> relu -> pool -> flatten``; hook
    ``body.layer{i}`` for "after stage i"; 512 penultimate features.

    Shape: ``(N, in_channels, H, W)`` in [0, 1] -> logits ``(N, num_classes)``.
    """

    def __init__(self, num_blocks: Sequence[int] = (2, 2, 2, 2), *, num_classes: int = 10, in_channels: int = 3,
                 image_size: int = 32, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> None:
        super().__init__()
        if image_size < 8:
            raise ValueError(f"PreActResNet needs an image size >= 8, got {image_size}")
        self.normalize = Normalize(*norm_stats(mean, std, in_channels))
        layers: list[tuple[str, nn.Module]] = [("conv1", nn.Conv2d(in_channels, 64, 3, padding=1, bias=False))]
        in_planes = 64
        for i, (planes, stride) in enumerate(zip((64, 128, 256, 512), (1, 2, 2, 2), strict=True)):
            blocks = []
            for s in [stride] + [1] * (num_blocks[i] - 1):
                blocks.append(PreActBlock(in_planes, planes, s))
                in_planes = planes
            layers.append((f"layer{i + 1}", nn.Sequential(*blocks)))
        layers += [("bn", nn.BatchNorm2d(in_planes)), ("relu", nn.ReLU()), ("pool", nn.AdaptiveAvgPool2d(1)),
                   ("flatten", nn.Flatten())]
        self.body = nn.Sequential(OrderedDict(layers))
        self.head = nn.Linear(in_planes, num_classes)


@register_model("preact_resnet18", "classifier")
def preact_resnet18(**kwargs: Any) -> PreActResNet:
    """PreAct-ResNet-18: 11,172,170 parameters for 10 classes."""
    return PreActResNet((2, 2, 2, 2), **kwargs)
