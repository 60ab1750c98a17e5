"""Fail fast: ``--ray`` without Ray installed, an ``--address`` that does not answer, or ``--address``
without ``--ray`` is one line on stderr (exit 2) before any work: no run directory is written."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest
from ray_models import FACTORY

from bbdefense.cli import main
from bbdefense.cluster import RAY_MISSING, connect
from bbdefense.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _refused(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    code = main(args)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket is closed


def _certify(out: Path, *extra: str) -> list[str]:
    return ["certify", "--model", FACTORY, "--dataset", "digits", "-n", "2", "--n", "10", "--out", str(out), *extra]


@pytest.fixture
def no_ray_session() -> None:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def test_an_address_that_does_not_answer_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                     no_ray_session: None) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'bbdefense[ray]')")
    addr = f"127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    line = _refused(capsys, _certify(tmp_path / "c", "--ray", "--address", addr))
    assert f"--address {addr}: no Ray cluster answers there" in line and "ray start --head" in line
    line = _refused(capsys, ["run", str(ROOT / "configs" / "quick.yaml"), "--out", str(tmp_path / "r"), "--ray",
                             "--address", addr])
    assert f"--address {addr}" in line
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "c").exists() and not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="must be HOST:PORT"):
        connect("nohost")


def test_ray_missing_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch, no_ray_session: None) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert _refused(capsys, _certify(tmp_path / "c", "--ray")) == f"error: {RAY_MISSING}"
    assert _refused(capsys, _privacy(tmp_path / "p", "--ray")) == f"error: {RAY_MISSING}"
    assert not (tmp_path / "c").exists() and not (tmp_path / "p").exists()


def _privacy(out: Path, *extra: str) -> list[str]:
    return ["privacy", "--model", FACTORY, "--dataset", "digits", "-n", "10", "--out", str(out), *extra]


def test_address_without_ray_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert "--address 127.0.0.1:1 needs --ray" in _refused(capsys, _privacy(tmp_path / "p", "--address",
                                                                             "127.0.0.1:1"))
    assert "--address 127.0.0.1:1 needs --ray" in _refused(capsys, _certify(tmp_path / "c", "--address",
                                                                             "127.0.0.1:1"))
