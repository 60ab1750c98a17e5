"""The zoo options that replaced the private DnCNN / UNet / autoencoder copies of ZO-AE-DS and IRS-Net."""

from __future__ import annotations

import pytest
import torch

from bbdefense.models.zoo.autoencoder import mnist_ae_192
from bbdefense.models.zoo.dncnn import DnCNN
from bbdefense.models.zoo.unet import UNet
from bbdefense.utils import seeded_init

X = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_skip_order_is_a_permutation_of_the_up_blocks_input_channels() -> None:
    with seeded_init(0):
        a = UNet(in_channels=1, base_width=4, depth=2, conv_bias=True, skip_first=False, out_activation="sigmoid")
    b = UNet(in_channels=1, base_width=4, depth=2, conv_bias=True, skip_first=True, out_activation="sigmoid")
    sd = a.state_dict()
    for i in range(2):
        w = sd[f"up.{i}.0.weight"]
        half = w.shape[1] // 2
        sd[f"up.{i}.0.weight"] = torch.cat([w[:, half:], w[:, :half]], dim=1)  # [up, skip] -> [skip, up]
    b.load_state_dict(sd)
    a.eval(), b.eval()
    with torch.no_grad():
        ya, yb = a(X), b(X)
    assert torch.allclose(ya, yb, atol=1e-6)
    assert float(ya.min()) > 0 and float(ya.max()) < 1  # sigmoid output
    assert a.down[0][0].bias is not None and UNet(in_channels=1, base_width=4, depth=2).down[0][0].bias is None
    with pytest.raises(ValueError, match="out_activation must be None or 'sigmoid', got 'tanh'"):
        UNet(out_activation="tanh")  # type: ignore[arg-type]


def test_flat_latent_autoencoder_is_the_same_network_with_vector_latents() -> None:
    with seeded_init(3):
        flat = mnist_ae_192(flat_latent=True)
    with seeded_init(3):
        grid = mnist_ae_192()
    assert [p.tolist() for p in flat.parameters()] == [p.tolist() for p in grid.parameters()]
    with torch.no_grad():
        z = flat.encoder(X)
        assert z.shape == (3, 192) and torch.equal(z, grid.encoder(X).flatten(1))
        assert torch.equal(flat.decoder(z), grid.decoder(z.view(3, 12, 4, 4)))
        assert torch.equal(flat(X), grid(X))


@pytest.mark.parametrize("depth", [2, 3, 6])
def test_small_dncnn_starts_as_the_identity(depth: int) -> None:
    with torch.no_grad():
        assert torch.equal(DnCNN(in_channels=1, depth=depth, features=8)(X), X)
    with pytest.raises(ValueError, match="depth must be >= 2, got 1"):
        DnCNN(depth=1)
