"""DnCNN (Zhang et al., IEEE TIP 2017, "Beyond a Gaussian Denoiser"), exactly as ZO-AE-DS builds it
(damon-demon/Black-Box-Defense ``archs/dncnn.py``, commit 68e749f; see reference/algorithms.md §1.1).

Layers: conv3x3(C -> 64, bias) + ReLU, then ``depth - 2`` x [conv3x3(64 -> 64, no bias) +
BN(eps=1e-4, momentum=0.95) + ReLU], then conv3x3(64 -> C, no bias). The network predicts the noise
and the output is the residual ``x - net(x)``. Initialisation: orthogonal conv weights, zero biases,
BN weight 1 / bias 0, and the **last conv set to zero**, so the untrained denoiser is exactly the
identity. No normalisation layer: it works in [0, 1] pixel space.

Note on BN momentum: the reference passes ``momentum=0.95`` to PyTorch, whose convention is the
weight of the *new* batch statistic (so running stats follow the latest batch closely); we keep
that value as is, to match the reference's behaviour.
"""

from __future__ import annotations

from torch import Tensor, nn

from .registry import register_model


class DnCNN(nn.Module):
    """Residual DnCNN denoiser.

    Args:
        in_channels: image channels ``C`` (1 for MNIST, 3 for CIFAR / STL-10).
        depth: number of conv layers (17; ZO-AE-DS's CPU-scale runs use 3-6, and 2 is conv + ReLU + conv).
        features: hidden channels (64; the CPU-scale runs use 8-32).

    Shape: ``(N, C, H, W)`` -> ``(N, C, H, W)`` (any H, W); output ``x - net(x)``, not clipped.
    """

    def __init__(self, *, in_channels: int = 3, depth: int = 17, features: int = 64) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if depth < 2:
            raise ValueError(f"DnCNN depth must be >= 2, got {depth}")
        if features < 1:
            raise ValueError(f"features must be >= 1, got {features}")
        self.in_channels = in_channels
        layers: list[nn.Module] = [nn.Conv2d(in_channels, features, 3, padding=1, bias=True), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(features, features, 3, padding=1, bias=False),
                       nn.BatchNorm2d(features, eps=1e-4, momentum=0.95), nn.ReLU()]
        layers.append(nn.Conv2d(features, in_channels, 3, padding=1, bias=False))
        self.dncnn = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Orthogonal convs, zero biases, BN (1, 0), last conv zero: the identity map."""
        last: nn.Conv2d | None = None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.orthogonal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
                last = m
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if last is not None:  # always true: the constructor ends with a conv
            nn.init.zeros_(last.weight)

    def forward(self, x: Tensor) -> Tensor:
        return x - self.dncnn(x)


@register_model("dncnn", "denoiser")
def dncnn(**kwargs: object) -> DnCNN:
    """DnCNN-17 with 64 features (ZO-AE-DS ``cifar_dncnn`` / ``mnist_dncnn``)."""
    return DnCNN(**kwargs)  # type: ignore[arg-type]  # registry kwargs are untyped; DnCNN checks them
