"""The UNet of IRS-Net (Kumar & Narayan, IJCNN 2022, "IRS-Net: Improved Randomized Smoothing"),
which uses the UNet of Ronneberger et al. (MICCAI 2015, "U-Net: Convolutional Networks for Biomedical
Image Segmentation") as its encoder-decoder ``U_theta``: it maps a noisy *normalised* image to the
input the classifier expects.

The IRS-Net paper gives no layer details (and has no public code), so this is Ronneberger's design:
a contracting path of ``depth`` levels, each two 3x3 conv + ReLU followed by a 2x2 max-pool, with
the width doubling from ``base_width`` (64) at each level; a bottleneck of two 3x3 convs; an
expanding path where a 2x2 transposed conv halves the width, the result is concatenated with the
skip connection of the same level and passed through two 3x3 convs; a final 1x1 conv to
``out_channels``. Two documented departures, both usual in denoising UNets: the 3x3 convs are
**padded** (output size = input size, no cropping) and followed by **batch normalisation**
(``batch_norm=False`` gives the original conv + ReLU). When a pooled size is odd (28 -> 14 -> 7 ->
3), the upsampled map is zero-padded to its skip's size. The output is linear by default (no clipping):
IRS-Net trains it against ``x`` in [0, 1] (or its normalised version) with an MAE loss;
``out_activation="sigmoid"`` bounds it to (0, 1) as the CPU-scale IRS-Net runs do.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import InputError
from .registry import register_model


def _double_conv(c_in: int, c_out: int, batch_norm: bool, bias: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in ((c_in, c_out), (c_out, c_out)):
        layers.append(nn.Conv2d(a, b, 3, padding=1, bias=bias))
        if batch_norm:
            layers.append(nn.BatchNorm2d(b))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """Ronneberger UNet with padded convolutions.

    Args:
        in_channels: channels of the (noisy) input image.
        out_channels: channels of the output image (default: ``in_channels``).
        base_width: filters of the first level (64 in Ronneberger et al.); level ``i`` has
            ``base_width * 2**i``.
        depth: number of 2x2 poolings (4 in Ronneberger et al.); the input side must be >= 2**depth.
        batch_norm: BN after every 3x3 conv (default True).
        conv_bias: a bias in the 3x3 convs (default: only without BN, where it is not redundant).
        skip_first: concatenate ``[skip, upsampled]`` (default) or ``[upsampled, skip]`` before a level's
            convs (the same function up to a permutation of input channels; it sets which channels the
            seeded initial weights meet).
        out_activation: ``None`` (linear output) or ``"sigmoid"`` (output in (0, 1), the range of
            [0, 1]-pixel classifiers).

    The IRS-Net figures of docs/denoised-smoothing.md were measured with the CPU-scale layout
    ``UNet(base_width=16, depth=2, conv_bias=True, skip_first=False, out_activation="sigmoid")``.

    Attributes ``down`` / ``up`` (``nn.ModuleList``) hold the levels, ``bottleneck`` the deepest
    block and ``out`` the 1x1 conv.

    Shape: ``(N, in_channels, H, W)`` -> ``(N, out_channels, H, W)``.
    """

    def __init__(self, *, in_channels: int = 3, out_channels: int | None = None, base_width: int = 64,
                 depth: int = 4, batch_norm: bool = True, conv_bias: bool | None = None, skip_first: bool = True,
                 out_activation: Literal["sigmoid"] | None = None) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        for label, v, lo in (("in_channels", in_channels, 1), ("out_channels", out_channels, 1),
                             ("base_width", base_width, 1), ("depth", depth, 1)):
            if v < lo:
                raise ValueError(f"{label} must be >= {lo}, got {v}")
        if out_activation not in (None, "sigmoid"):
            raise ValueError(f"out_activation must be None or 'sigmoid', got {out_activation!r}")
        bias = not batch_norm if conv_bias is None else conv_bias
        self.in_channels, self.out_channels, self.depth = in_channels, out_channels, depth
        self.skip_first, self.out_activation = skip_first, out_activation
        widths = [base_width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths[:-1]:
            self.down.append(_double_conv(c, w, batch_norm, bias))
            c = w
        self.bottleneck = _double_conv(widths[-2], widths[-1], batch_norm, bias)
        self.upconv = nn.ModuleList()
        self.up = nn.ModuleList()
        for w_hi, w_lo in zip(reversed(widths[1:]), reversed(widths[:-1]), strict=True):
            self.upconv.append(nn.ConvTranspose2d(w_hi, w_lo, 2, stride=2))
            self.up.append(_double_conv(2 * w_lo, w_lo, batch_norm, bias))
        self.out = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or min(x.shape[-2:]) < 2**self.depth:
            raise InputError(f"UNet of depth {self.depth} needs (N, C, H, W) with H, W >= {2**self.depth}, "
                             f"got shape {tuple(x.shape)}")
        skips = []
        h = x
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = F.max_pool2d(h, 2)
        h = self.bottleneck(h)
        for upconv, block, skip in zip(self.upconv, self.up, reversed(skips), strict=True):
            h = upconv(h)
            dh, dw = skip.shape[-2] - h.shape[-2], skip.shape[-1] - h.shape[-1]
            if dh or dw:
                h = F.pad(h, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
            h = block(torch.cat([skip, h] if self.skip_first else [h, skip], dim=1))
        h = self.out(h)
        return torch.sigmoid(h) if self.out_activation == "sigmoid" else h


@register_model("unet", "denoiser")
def unet(**kwargs: object) -> UNet:
    """IRS-Net / Ronneberger UNet (defaults: base width 64, depth 4)."""
    return UNet(**kwargs)  # type: ignore[arg-type]  # registry kwargs are untyped; UNet checks them
