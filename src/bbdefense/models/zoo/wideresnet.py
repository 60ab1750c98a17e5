"""Wide Residual Networks (Zagoruyko & Komodakis, BMVC 2016): depth ``6n + 4``, widen factor ``k``;
a 3x3 stem with 16 filters, three stages of ``n`` pre-activation blocks with 16k-32k-64k filters
(strides 1, 2, 2), optional dropout between the two convolutions of a block, a final BN-ReLU, global
average pooling and one linear layer. WRN-28-10 is the model of TRADES, RobustBench and the UniG
paper.

Written from the paper; the layout (1x1 projection shortcut on the pre-activated input, He-normal
fan-out init) was checked against xternalz/WideResNet-pytorch ``wideresnet.py`` (commit 1171f93).
Parameter counts for 10 classes and 3 channels: WRN-28-10 36,479,194 (the paper's 36.5M),
WRN-16-4 2,748,890 (the paper's 2.7M).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from ._common import norm_stats
from .base import ImageClassifier, Normalize
from .registry import register_model


class WideBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 plus the shortcut (identity, or a 1x1 conv of the
    pre-activated input when the shape changes).

    Shape: ``(N, in_planes, H, W)`` -> ``(N, planes, ceil(H/stride), ceil(W/stride))``.
    """

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.dropout = dropout
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.relu(self.bn2(self.conv1(out)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        return self.conv2(out) + skip


class WideResNet(ImageClassifier):
    """WRN-``depth``-``widen_factor``.

    ``body`` is ``conv1 -> layer1 -> layer2 -> layer3 -> bn -> relu -> pool -> flatten`` (hook
    ``body.layer{i}`` for "after stage i"); ``64 * widen_factor`` penultimate features.

    Args:
        depth: ``6n + 4`` (16, 22, 28, 34, 40, ...); default 28.
        widen_factor: ``k``; default 10.
        dropout: dropout probability inside each block (the paper uses 0.3 on some runs); default 0.
        num_classes, in_channels, image_size, mean, std: the zoo's classifier arguments.

    Shape: ``(N, in_channels, H, W)`` in [0, 1] -> logits ``(N, num_classes)``.
    """

    def __init__(self, depth: int = 28, widen_factor: int = 10, *, dropout: float = 0.0, num_classes: int = 10,
                 in_channels: int = 3, image_size: int = 32, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4 (16, 22, 28, 34, ...), got {depth}")
        if widen_factor < 1:
            raise ValueError(f"widen_factor must be >= 1, got {widen_factor}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if image_size < 4:
            raise ValueError(f"WideResNet needs an image size >= 4, got {image_size}")
        n = (depth - 4) // 6
        self.normalize = Normalize(*norm_stats(mean, std, in_channels))
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        layers: list[tuple[str, nn.Module]] = [("conv1", nn.Conv2d(in_channels, 16, 3, padding=1, bias=False))]
        in_planes = 16
        for i, (planes, stride) in enumerate(zip(widths, (1, 2, 2), strict=True)):
            blocks = []
            for s in [stride] + [1] * (n - 1):
                blocks.append(WideBlock(in_planes, planes, s, dropout))
                in_planes = planes
            layers.append((f"layer{i + 1}", nn.Sequential(*blocks)))
        layers += [("bn", nn.BatchNorm2d(in_planes)), ("relu", nn.ReLU()), ("pool", nn.AdaptiveAvgPool2d(1)),
                   ("flatten", nn.Flatten())]
        self.body = nn.Sequential(OrderedDict(layers))
        self.head = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)


@register_model("wideresnet", "classifier")
def wideresnet(**kwargs: Any) -> WideResNet:
    """WideResNet with ``depth`` / ``widen_factor`` keyword arguments (default WRN-28-10)."""
    return WideResNet(**kwargs)


@register_model("wrn28_10", "classifier")
def wrn28_10(**kwargs: Any) -> WideResNet:
    """WRN-28-10: 36,479,194 parameters for 10 classes."""
    return WideResNet(28, 10, **kwargs)


@register_model("wrn16_4", "classifier")
def wrn16_4(**kwargs: Any) -> WideResNet:
    """WRN-16-4: 2,748,890 parameters for 10 classes (small enough for CPU experiments)."""
    return WideResNet(16, 4, **kwargs)
