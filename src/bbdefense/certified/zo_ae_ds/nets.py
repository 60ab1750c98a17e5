"""Small networks of denoised smoothing: DnCNN denoiser and the MNIST d_z = 192 autoencoder.

These follow the ZO-AE-DS reference architectures (damon-demon/Black-Box-Defense @ 68e749f,
``archs/dncnn.py`` and ``archs/cae.py``, see ``shared/reference/algorithms.md`` §1.1) with a
configurable DnCNN depth/width so that they train on a 2-core CPU. The zoo branch provides
registered versions (``dncnn``, ``mnist_ae_192``); these local ones keep this package
self-contained and are what the recorded figures used.
"""
from __future__ import annotations

from torch import Tensor, nn

from ...errors import InputError


class DnCNN(nn.Module):
    """DnCNN (Zhang et al. 2017) in residual form: ``D(x) = x - net(x)``, pixel space, no normalisation.

    Conv(C->w)+ReLU, (depth-2) x [Conv(w->w, no bias)+BN(eps 1e-4, momentum 0.95)+ReLU],
    Conv(w->C, no bias). Orthogonal init and a **zero last layer**, so the initial denoiser is the
    identity (as in the reference code). The paper uses depth 17, width 64; the demo uses depth 6,
    width 32 (documented in docs/denoised-smoothing.md).

    Shape: ``(N, C, H, W)`` -> ``(N, C, H, W)`` (not clipped; callers clamp to [0, 1] before a black box).
    """

    def __init__(self, *, in_channels: int = 1, depth: int = 6, width: int = 32) -> None:
        super().__init__()
        if depth < 2:
            raise InputError(f"DnCNN depth must be >= 2, got {depth}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1, bias=True), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False),
                       nn.BatchNorm2d(width, eps=1e-4, momentum=0.95), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(width, in_channels, 3, padding=1, bias=False))
        self.net = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.orthogonal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.net[-1].weight)

    def forward(self, x: Tensor) -> Tensor:
        return x - self.net(x)


class MnistEncoder192(nn.Module):
    """Conv(1->3, k4, s2, p1) -> 3x14x14, ReLU, Conv(3->12, k5, s3) -> 12x4x4 = 192, ReLU.

    Shape: ``(N, 1, 28, 28)`` -> ``(N, 192)`` (flattened, z >= 0).
    """

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 3, 4, 2, 1), nn.ReLU(), nn.Conv2d(3, 12, 5, 3), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten(1)


class MnistDecoder192(nn.Module):
    """ConvT(12->3, k5, s3) -> 14x14, ReLU, ConvT(3->1, k4, s2, p1) -> 28x28, Sigmoid.

    Shape: ``(N, 192)`` -> ``(N, 1, 28, 28)`` in [0, 1].
    """

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.ConvTranspose2d(12, 3, 5, 3), nn.ReLU(), nn.ConvTranspose2d(3, 1, 4, 2, 1),
                                 nn.Sigmoid())

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z.view(z.shape[0], 12, 4, 4))


class AutoEncoder(nn.Module):
    """``decoder(encoder(x))``; ``latent_dim`` is d_z (192 for the MNIST reference design).

    Shape: ``(N, 1, 28, 28)`` -> ``(N, 1, 28, 28)``.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int) -> None:
        super().__init__()
        self.encoder, self.decoder, self.latent_dim = encoder, decoder, latent_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


def mnist_ae_192() -> AutoEncoder:
    """The ZO-AE-DS MNIST autoencoder (``mnist_dim_encoder`` / ``mnist_dim_decoder``), d_z = 192."""
    return AutoEncoder(MnistEncoder192(), MnistDecoder192(), 192)
