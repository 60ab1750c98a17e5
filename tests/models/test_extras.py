"""Optional extras: without one, its feature stops with one line naming `pip install 'bbdefense[EXTRA]'`
(simulated by blocking the import through ``sys.modules``); with it, the feature works."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from bbdefense.errors import MissingExtraError
from bbdefense.utils import require_extra

SHAPE = (1, 16, 16)


def _block(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    for n in names:
        monkeypatch.setitem(sys.modules, n, None)  # `import n` now raises ImportError, as if not installed


def _one_line(exc: pytest.ExceptionInfo[MissingExtraError], extra: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg and msg.endswith(f"pip install 'bbdefense[{extra}]'")


def test_require_extra_names_the_install(monkeypatch):
    _block(monkeypatch, "onnxruntime")
    with pytest.raises(MissingExtraError) as exc:
        require_extra("onnxruntime", "onnx", "an ONNX model")
    _one_line(exc, "onnx")
    assert isinstance(exc.value, ImportError)  # callers that catch ImportError keep working


def test_onnx_extra(monkeypatch, tmp_path):
    from bbdefense.models import build_model, export_onnx
    from bbdefense.models.backends import OnnxBackend

    net = build_model("lenet", num_classes=10, in_channels=1, image_size=16, mean=[0.0], std=[1.0])
    if importlib.util.find_spec("onnx") and importlib.util.find_spec("onnxruntime"):  # with the extra: it works
        path = export_onnx(net, tmp_path / "m.onnx", SHAPE)
        out = OnnxBackend(path).forward(torch.zeros(2, *SHAPE))
        assert torch.allclose(out, net(torch.zeros(2, *SHAPE)), atol=1e-5)
    _block(monkeypatch, "onnx", "onnxruntime")
    with pytest.raises(MissingExtraError) as exc:
        export_onnx(net, tmp_path / "n.onnx", SHAPE)
    _one_line(exc, "onnx")
    with pytest.raises(MissingExtraError) as exc:
        OnnxBackend(tmp_path / "m.onnx")
    _one_line(exc, "onnx")


def test_serve_extra(monkeypatch):
    from bbdefense.models import BlackBox
    from bbdefense.models.remote import HttpBackend
    from bbdefense.serve import create_app

    bb = BlackBox.from_callable(lambda x: torch.zeros(x.shape[0], 3), num_classes=3, input_shape=SHAPE)
    if importlib.util.find_spec("fastapi"):
        assert create_app(bb, keys={"keys": [{"name": "a", "key": "k", "budget": 1}]}, db_path=":memory:")
    _block(monkeypatch, "fastapi", "httpx", "uvicorn")
    with pytest.raises(MissingExtraError) as exc:
        create_app(bb, keys={"keys": [{"name": "a", "key": "k", "budget": 1}]}, db_path=":memory:")
    _one_line(exc, "serve")
    with pytest.raises(MissingExtraError) as exc:
        HttpBackend("http://127.0.0.1:9", "k")
    _one_line(exc, "serve")


def test_ssim_extra(monkeypatch):
    from bbdefense.certified.zo_ae_ds.reconstruction import rmse_ssim

    x = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(0))
    if importlib.util.find_spec("skimage"):
        rmse, ssim = rmse_ssim(x.flatten(1), x)
        assert rmse == 0.0 and ssim == pytest.approx(1.0)
    _block(monkeypatch, "skimage", "skimage.metrics")
    with pytest.raises(MissingExtraError) as exc:
        rmse_ssim(x.flatten(1), x)
    _one_line(exc, "ssim")


def test_cli_without_an_extra_is_one_line_and_exit_2(monkeypatch, tmp_path, capsys):
    from bbdefense.cli import main
    from bbdefense.models import build_model
    from bbdefense.models.checkpoint import CheckpointMeta, save_checkpoint

    net = build_model("lenet", num_classes=10, in_channels=1, image_size=16, mean=[0.0], std=[1.0])
    meta = CheckpointMeta(arch="lenet", arch_kwargs={"num_classes": 10, "in_channels": 1, "image_size": 16,
                                                     "mean": [0.0], "std": [1.0]}, kind="classifier",
                          dataset="digits", num_classes=10, input_shape=list(SHAPE), mean=[0.0], std=[1.0])
    save_checkpoint(tmp_path / "ck", net, meta)
    _block(monkeypatch, "onnx", "onnxruntime")
    code = main(["export-onnx", "--model", str(tmp_path / "ck"), "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr()
    lines = [ln for ln in (err.out + err.err).splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "pip install 'bbdefense[onnx]'" in lines[0]
