"""Shared helpers of the serving tests (keys, a tiny randomized defense, a real server in a subprocess)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

SHAPE = (1, 8, 8)
KEYS = {"keys": [
    {"name": "alice", "key": "alice-secret", "budget": 100},
    {"name": "bob", "key": "bob-secret"},
    {"name": "carol", "key": "carol-secret", "budget": 5},
    {"name": "slow", "key": "slow-secret", "rate": 0.001, "burst": 1},
]}
ALICE = {"X-API-Key": "alice-secret"}
BOB = {"X-API-Key": "bob-secret"}


class NoisyInput(nn.Module):
    """A tiny randomized defense for tests: Gaussian noise on the input, then the model."""

    randomized = True

    def __init__(self, module: nn.Module, *, sigma: float = 0.1, seed: int | None = 0) -> None:
        super().__init__()
        self.module, self.sigma = module, sigma
        self.gen = torch.Generator().manual_seed(seed or 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=self.gen) * self.sigma
        return self.module((x + noise).clamp(0, 1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``bbdefense serve`` in a subprocess on 127.0.0.1 (a real uvicorn server)."""

    def __init__(self, args: list[str], port: int) -> None:
        self.args, self.port = args, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> Server:
        import httpx

        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
        self.proc = subprocess.Popen([sys.executable, "-m", "bbdefense", "serve", "--port", str(self.port),
                                      *self.args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not start in time")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no shutdown handler runs
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
