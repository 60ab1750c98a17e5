"""A small UNet (Ronneberger et al. 2015) for IRS-Net and the denoised-smoothing baselines.

Two down-sampling levels (28 -> 14 -> 7 on MNIST), skip connections, a 1x1 output conv and a
sigmoid, so the output lies in [0, 1]: the pixel range the zoo classifiers expect (their
normalisation is their first layer). ``width`` is the first level's channel count (paper-scale
UNets use 64; the demo uses 16, documented in docs/denoised-smoothing.md).

Shape: ``(N, C, H, W)`` -> ``(N, C, H, W)`` in [0, 1]; H and W divisible by 4.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ...errors import InputError


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """UNet with two pooling levels; see the module docstring for shapes."""

    def __init__(self, *, in_channels: int = 1, out_channels: int | None = None, width: int = 16) -> None:
        super().__init__()
        if width < 1:
            raise InputError(f"UNet width must be >= 1, got {width}")
        oc = in_channels if out_channels is None else out_channels
        w = width
        self.enc1, self.enc2, self.mid = _block(in_channels, w), _block(w, 2 * w), _block(2 * w, 4 * w)
        self.pool = nn.MaxPool2d(2)
        self.up2, self.dec2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, 2), _block(4 * w, 2 * w)
        self.up1, self.dec1 = nn.ConvTranspose2d(2 * w, w, 2, 2), _block(2 * w, w)
        self.out = nn.Conv2d(w, oc, 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise InputError(f"UNet needs H and W divisible by 4, got {tuple(x.shape[-2:])}")
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        m = self.mid(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return torch.sigmoid(self.out(d1))
