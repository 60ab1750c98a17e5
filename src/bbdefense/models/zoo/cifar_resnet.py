"""The CIFAR ResNets of He et al. (CVPR 2016, "Deep Residual Learning for Image Recognition", §4.2):
depth ``6n + 2``, a 3x3 stem with 16 filters, three stages of ``n`` basic blocks with 16-32-64 filters
(strides 1, 2, 2), global average pooling and one linear layer. ResNet-110 is the black box of
Cohen et al. 2019, ZO-AE-DS and IRS-Net.

Shortcuts when the shape changes: ``"A"`` (the paper's CIFAR choice: parameter-free, stride-2
subsampling plus zero-padded channels) or ``"B"`` (1x1 conv + BN projection, what the
bearpaw/pytorch-classification ``resnet.py`` used by locuslab/smoothing and Black-Box-Defense
does). Written from the paper; checked against akamaster/pytorch_resnet_cifar10 (commit d5489e8,
option A) and damon-demon/Black-Box-Defense ``archs/cifar_resnet.py`` (commit 68e749f, option B).

Parameter counts for 10 classes, 3 channels, shortcut A: ResNet-20 269,722 (the paper's "0.27M"),
ResNet-110 1,727,962 (the paper's "1.7M"); shortcut B: 272,474 and 1,730,714.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from ._common import norm_stats
from .base import ImageClassifier, Normalize
from .registry import register_model

Shortcut = Literal["A", "B"]


class PadShortcut(nn.Module):
    """Option-A shortcut: ``x[:, :, ::2, ::2]`` with ``(out - in)`` zero channels split on both sides.

    Shape: ``(N, in_planes, H, W)`` -> ``(N, out_planes, ceil(H/2), ceil(W/2))``.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.before = (out_planes - in_planes) // 2
        self.after = out_planes - in_planes - self.before

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.before, self.after))


class CifarBasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU.

    Shape: ``(N, in_planes, H, W)`` -> ``(N, planes, ceil(H/stride), ceil(W/stride))``.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: Shortcut = "A") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            if shortcut == "A":
                self.shortcut = PadShortcut(in_planes, planes, stride)
            else:
                self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                              nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(ImageClassifier):
    """He et al.'s ``6n + 2``-layer CIFAR ResNet.

    ``body`` is ``conv1 -> bn1 -> relu -> layer1 -> layer2 -> layer3 -> pool -> flatten`` (hook
    ``body.layer{i}`` for "after stage i"); 64 penultimate features.

    Args:
        depth: ``6n + 2`` (20, 32, 44, 56, 110, ...).
        shortcut: ``"A"`` (zero-padding identity, the paper) or ``"B"`` (1x1 projection).
        num_classes, in_channels, image_size, mean, std: the zoo's classifier arguments.

    Shape: ``(N, in_channels, H, W)`` in [0, 1] -> logits ``(N, num_classes)``.
    """

    def __init__(self, depth: int = 20, *, shortcut: Shortcut = "A", num_classes: int = 10, in_channels: int = 3,
                 image_size: int = 32, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2 (20, 32, 44, 56, 110, ...), got {depth}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        if image_size < 4:
            raise ValueError(f"CIFAR ResNet needs an image size >= 4, got {image_size}")
        n = (depth - 2) // 6
        self.normalize = Normalize(*norm_stats(mean, std, in_channels))
        layers: list[tuple[str, nn.Module]] = [
            ("conv1", nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)),
            ("bn1", nn.BatchNorm2d(16)),
            ("relu", nn.ReLU()),
        ]
        in_planes = 16
        for i, (planes, stride) in enumerate(zip((16, 32, 64), (1, 2, 2), strict=True)):
            blocks = []
            for s in [stride] + [1] * (n - 1):
                blocks.append(CifarBasicBlock(in_planes, planes, s, shortcut))
                in_planes = planes
            layers.append((f"layer{i + 1}", nn.Sequential(*blocks)))
        layers += [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten())]
        self.body = nn.Sequential(OrderedDict(layers))
        self.head = nn.Linear(64, num_classes)
        for m in self.modules():  # He et al. initialisation ("as in [13]")
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight)


@register_model("resnet20", "classifier")
def resnet20(**kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-20 (n = 3): 269,722 parameters with shortcut A (paper: 0.27M)."""
    return CifarResNet(20, **kwargs)


@register_model("resnet110", "classifier")
def resnet110(**kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-110 (n = 18): 1,727,962 parameters with shortcut A (paper: 1.7M)."""
    return CifarResNet(110, **kwargs)
