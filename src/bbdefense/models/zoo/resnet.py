"""ResNet-18/34/50 with the CIFAR stem (He et al., CVPR 2016, "Deep Residual Learning for Image
Recognition"; CIFAR adaptation as in kuangliu/pytorch-cifar ``models/resnet.py`` and Cohen et al.
2019's ``archs``): a 3x3 stride-1 stem convolution and **no** max-pool, four stages of widths
64-128-256-512 (strides 1, 2, 2, 2), global average pooling and one linear layer.

Written from the paper's description; the layout was checked against kuangliu/pytorch-cifar
(commit 49b7aa9). Parameter counts for 10 classes and 3 input channels: ResNet-18 11,173,962
(the "11.2M" usually quoted for CIFAR ResNet-18), ResNet-34 21,282,122, ResNet-50 23,520,842.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ._common import norm_stats
from .base import ImageClassifier, Normalize
from .registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN projection) shortcut.

    Shape: ``(N, in_planes, H, W)`` -> ``(N, planes, ceil(H/stride), ceil(W/stride))``.
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand (x4), each with BN; projection shortcut
    when the shape changes.

    Shape: ``(N, in_planes, H, W)`` -> ``(N, 4 * planes, ceil(H/stride), ceil(W/stride))``.
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = self.expansion * planes
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_planes))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


class ResNet(ImageClassifier):
    """ImageNet-family ResNet with the CIFAR stem.

    ``body`` is ``conv1 -> bn1 -> relu -> layer1 .. layer4 -> pool -> flatten``; hook
    ``body.layer{i}`` for the features "after stage i". Global average pooling makes any input size
    >= 8 work (28x28 MNIST, 32x32 CIFAR, 96x96 STL-10).

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        num_blocks: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        num_classes, in_channels, image_size, mean, std: the zoo's classifier arguments.

    Shape: ``(N, in_channels, H, W)`` in [0, 1] -> logits ``(N, num_classes)``.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], num_blocks: Sequence[int], *,
                 num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__()
        if image_size < 8:
            raise ValueError(f"ResNet needs an image size >= 8, got {image_size}")
        self.normalize = Normalize(*norm_stats(mean, std, in_channels))
        stages: list[tuple[str, nn.Module]] = [
            ("conv1", nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)),
            ("bn1", nn.BatchNorm2d(64)),
            ("relu", nn.ReLU()),
        ]
        in_planes = 64
        for i, (planes, stride) in enumerate(zip((64, 128, 256, 512), (1, 2, 2, 2), strict=True)):
            blocks = []
            for s in [stride] + [1] * (num_blocks[i] - 1):
                blocks.append(block(in_planes, planes, s))
                in_planes = planes * block.expansion
            stages.append((f"layer{i + 1}", nn.Sequential(*blocks)))
        stages += [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten())]
        self.body = nn.Sequential(OrderedDict(stages))
        self.head = nn.Linear(in_planes, num_classes)


@register_model("resnet18", "classifier")
def resnet18(**kwargs: Any) -> ResNet:
    """CIFAR ResNet-18: BasicBlock x (2, 2, 2, 2), 11,173,962 parameters for 10 classes."""
    return ResNet(BasicBlock, (2, 2, 2, 2), **kwargs)


@register_model("resnet34", "classifier")
def resnet34(**kwargs: Any) -> ResNet:
    """CIFAR ResNet-34: BasicBlock x (3, 4, 6, 3), 21,282,122 parameters for 10 classes."""
    return ResNet(BasicBlock, (3, 4, 6, 3), **kwargs)


@register_model("resnet50", "classifier")
def resnet50(**kwargs: Any) -> ResNet:
    """CIFAR ResNet-50: Bottleneck x (3, 4, 6, 3), 23,520,842 parameters for 10 classes."""
    return ResNet(Bottleneck, (3, 4, 6, 3), **kwargs)
