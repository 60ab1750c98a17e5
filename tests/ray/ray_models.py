"""A ``module:factory`` for the Ray tests (``--model ray_models:linear``): a seeded linear classifier of the
8x8 ``digits`` images whose workers can be slowed down or held mid-chunk through files in the folder named
by ``$BBD_RAY_CONTROL`` (the fixture sets it before Ray starts, so every worker sees it):

* ``slow``: each forward pass sleeps 0.1 s (a driver can be killed after its first rows);
* ``hold``: the first forward pass of a process writes ``pid-<pid>`` and waits while ``hold`` exists (a
  test kills that process by its pid mid-chunk).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from torch import Tensor, nn

FACTORY = "ray_models:linear"
HERE_SRC = str(Path(__file__).resolve().parents[2] / "src")
SHAPE = (1, 8, 8)


def control() -> Path | None:
    d = os.environ.get("BBD_RAY_CONTROL")
    return Path(d) if d else None


class ControlledLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.fc = nn.Linear(64, 10)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(10, 64, generator=g) * 3)
            self.fc.bias.zero_()
        self.input_shape = SHAPE
        self.num_classes = 10  # no forward pass while a worker loads the model: the first one is mid-chunk
        self.dataset = "digits"
        self.split_seed = 0
        self.held = False

    def forward(self, x: Tensor) -> Tensor:
        ctl = control()
        if ctl is not None:
            if (ctl / "slow").exists():
                time.sleep(0.1)
            if not self.held and (ctl / "hold").exists():
                self.held = True
                (ctl / f"pid-{os.getpid()}").write_text("")
                while (ctl / "hold").exists():
                    time.sleep(0.05)
        return self.fc(x.flatten(1) - 0.3)


def linear() -> nn.Module:
    return ControlledLinear().eval()


def bad_input_factory() -> nn.Module:
    """A model whose forward raises (a chunk that fails for a bad input)."""

    class Broken(ControlledLinear):
        def forward(self, x: Tensor) -> Tensor:
            if x.shape[0] > 0 and float(x.max()) > 10:
                raise ValueError(f"bad input: pixel value {float(x.max()):.1f} outside [0, 1]")
            return super().forward(x)

    return Broken().eval()


class Shrink(nn.Module):
    """A deterministic pre-processor (a stand-in for a denoiser): ``0.8 x + 0.1`` then a fixed 3x3 blur."""

    def __init__(self) -> None:
        super().__init__()
        self.blur = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        with torch.no_grad():
            self.blur.weight.fill_(1 / 9)

    def forward(self, x: Tensor) -> Tensor:
        return self.blur(0.8 * x + 0.1)
