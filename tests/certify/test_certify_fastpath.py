"""The CPU fast path: a channels_last TorchBackend gives the eager logits within 1e-5 and the same certificates."""

from __future__ import annotations

import pytest
import torch

from bbdefense.certify import Smooth, make_noise
from bbdefense.errors import InputError
from bbdefense.models import BlackBox
from bbdefense.models.backends import TorchBackend
from bbdefense.models.zoo import build_model


@pytest.mark.parametrize(("arch", "c", "s"), [("smallcnn", 1, 28), ("resnet20", 3, 32)])
def test_channels_last_matches_eager(arch: str, c: int, s: int) -> None:
    torch.manual_seed(0)
    a = build_model(arch, num_classes=10, in_channels=c, image_size=s)
    b = build_model(arch, num_classes=10, in_channels=c, image_size=s)
    b.load_state_dict(a.state_dict())
    eager, fast = TorchBackend(a), TorchBackend(b, memory_format="channels_last")
    x = torch.rand(8, c, s, s, generator=torch.Generator().manual_seed(1))
    assert float((eager.forward(x) - fast.forward(x)).abs().max()) <= 1e-5
    shape = (c, s, s)
    certs = [Smooth(BlackBox(be, num_classes=10, input_shape=shape), make_noise("gaussian", sigma=0.25),
                    norms=("l2",)).certify(x[:2], n0=8, n=40, alpha=0.01, seed=0) for be in (eager, fast)]
    assert [cc.counts for cc in certs[0]] == [cc.counts for cc in certs[1]]
    with pytest.raises(InputError, match="memory_format"):
        TorchBackend(a, memory_format="nhwc")
