"""The convolutional autoencoders of ZO-AE-DS (Zhang et al., ICLR 2022, "How to Robustify Black-Box
ML Models? A Zeroth-Order Optimization Perspective", §4 and Table 5), with the paper's latent sizes
``d_z``: 192 for CIFAR-10, 192 for MNIST, 576 for STL-10.

Layouts (damon-demon/Black-Box-Defense ``archs/cae.py``, commit 68e749f; reference/algorithms.md §1.1),
``Conv(c_in -> c_out, kernel, stride, padding)``, every layer followed by ReLU except the decoder's
last (Sigmoid, so reconstructions are in [0, 1]):

* ``cifar_ae_192`` (``Cifar_Encoder_192_24`` / ``Cifar_Decoder_192_24``, the README's choice):
  encoder Conv(3->24, 4, 4) -> Conv(24->48, 3, 3, 2) -> Conv(48->96, 4, 2, 1) -> Conv(96->192, 2, 2)
  (32 -> 8 -> 4 -> 2 -> 1); decoder the transposed convs in reverse order.
* ``mnist_ae_192`` (``MNIST_Dim_Encoder`` / ``MNIST_Dim_Decoder``): encoder Conv(1->3, 4, 2, 1) ->
  Conv(3->12, 5, 3) (28 -> 14 -> 4: latent 12x4x4 = 192); decoder ConvT(12->3, 5, 3) ->
  ConvT(3->1, 4, 2, 1).
* ``stl_ae_576`` (``STL_Encoder`` / ``STL_Decoder``): encoder Conv(3->18, 5, 3, 1) -> Conv(18->72, 4, 4)
  -> Conv(72->144, 3, 3, 2) -> Conv(144->288, 4, 2, 1) -> Conv(288->576, 2, 2) (96 -> 32 -> 8 -> 4 ->
  2 -> 1); decoder the transposed convs in reverse order.

The encoder's final ReLU makes ``z >= 0`` (the reference keeps it; ZO probes ``z + mu u`` may leave
that set, and the reference does not clip).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .registry import register_model

# (c_in, c_out, kernel, stride, padding) for each encoder conv; the decoder mirrors it.
LAYOUTS: dict[str, tuple[int, int, list[tuple[int, int, int, int, int]]]] = {
    # name: (in_channels, image_size, layers)
    "cifar_ae_192": (3, 32, [(3, 24, 4, 4, 0), (24, 48, 3, 3, 2), (48, 96, 4, 2, 1), (96, 192, 2, 2, 0)]),
    "mnist_ae_192": (1, 28, [(1, 3, 4, 2, 1), (3, 12, 5, 3, 0)]),
    "stl_ae_576": (3, 96, [(3, 18, 5, 3, 1), (18, 72, 4, 4, 0), (72, 144, 3, 3, 2), (144, 288, 4, 2, 1),
                           (288, 576, 2, 2, 0)]),
}


class ConvAutoEncoder(nn.Module):
    """``forward(x) = decoder(encoder(x))``.

    Args:
        layers: the encoder convs as ``(c_in, c_out, kernel, stride, padding)``; the decoder applies
            the transposed convs in reverse order.
        in_channels, image_size: the input the layout was designed for (checked at construction).
        flat_latent: the encoder ends with a flatten and the decoder starts with the inverse unflatten, so
            latents are vectors ``(N, latent_dim)`` (what ZO-AE-DS estimates gradients over); the layers
            and their initialisation are the same either way (only the module indices shift by one in
            the decoder).

    Attributes:
        encoder: ``(N, C, H, W)`` -> latent ``(N, c, h, w)`` with ``c*h*w = latent_dim`` (``(N, latent_dim)``
            with ``flat_latent``).
        decoder: latent -> ``(N, C, H, W)`` in (0, 1) (Sigmoid).
        latent_shape: ``(c, h, w)``; latent_dim: ``c*h*w``.

    Shape: ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """

    def __init__(self, layers: Sequence[tuple[int, int, int, int, int]], *, in_channels: int,
                 image_size: int, flat_latent: bool = False) -> None:
        super().__init__()
        enc: list[nn.Module] = []
        size = image_size
        for c_in, c_out, k, s, p in layers:
            enc += [nn.Conv2d(c_in, c_out, k, stride=s, padding=p), nn.ReLU()]
            size = (size + 2 * p - k) // s + 1
        dec: list[nn.Module] = []
        for c_in, c_out, k, s, p in reversed(layers):
            dec += [nn.ConvTranspose2d(c_out, c_in, k, stride=s, padding=p), nn.ReLU()]
        dec[-1] = nn.Sigmoid()
        self.latent_shape = (layers[-1][1], size, size)
        if flat_latent:
            enc.append(nn.Flatten(1))
            dec.insert(0, nn.Unflatten(1, self.latent_shape))
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        self.in_channels, self.image_size, self.flat_latent = in_channels, image_size, flat_latent
        self.latent_dim = layers[-1][1] * size * size

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


def _build(name: str, in_channels: int | None, image_size: int | None, flat_latent: bool = False) -> ConvAutoEncoder:
    c, s, layers = LAYOUTS[name]
    if in_channels is not None and in_channels != c:
        raise ValueError(f"{name} is designed for {c}-channel images, got in_channels={in_channels}")
    if image_size is not None and image_size != s:
        raise ValueError(f"{name} is designed for {s}x{s} images, got image_size={image_size}")
    return ConvAutoEncoder(layers, in_channels=c, image_size=s, flat_latent=flat_latent)


@register_model("cifar_ae_192", "autoencoder")
def cifar_ae_192(*, in_channels: int | None = 3, image_size: int | None = 32,
                 flat_latent: bool = False) -> ConvAutoEncoder:
    """ZO-AE-DS CIFAR-10 autoencoder (``_192_24``): ``(N, 3, 32, 32)``, latent ``(N, 192, 1, 1)``."""
    return _build("cifar_ae_192", in_channels, image_size, flat_latent)


@register_model("mnist_ae_192", "autoencoder")
def mnist_ae_192(*, in_channels: int | None = 1, image_size: int | None = 28,
                 flat_latent: bool = False) -> ConvAutoEncoder:
    """ZO-AE-DS MNIST autoencoder: ``(N, 1, 28, 28)``, latent ``(N, 12, 4, 4)`` = 192."""
    return _build("mnist_ae_192", in_channels, image_size, flat_latent)


@register_model("stl_ae_576", "autoencoder")
def stl_ae_576(*, in_channels: int | None = 3, image_size: int | None = 96,
               flat_latent: bool = False) -> ConvAutoEncoder:
    """ZO-AE-DS STL-10 autoencoder: ``(N, 3, 96, 96)``, latent ``(N, 576, 1, 1)``."""
    return _build("stl_ae_576", in_channels, image_size, flat_latent)
