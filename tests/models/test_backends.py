"""TorchScript, ONNX and checkpoint backends agree with the module."""

from __future__ import annotations

import json

import pytest
import torch

from bbdefense import CheckpointError, InputError
from bbdefense.models import (
    BlackBox,
    CheckpointMeta,
    OnnxBackend,
    TorchScriptBackend,
    build_model,
    export_onnx,
    load_blackbox,
    load_checkpoint,
    save_checkpoint,
)


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return build_model("smallcnn", num_classes=10, in_channels=1, image_size=28, mean=[0.13], std=[0.3]).eval()


@pytest.fixture(scope="module")
def x28():
    return torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def _meta(m):
    return CheckpointMeta(arch="smallcnn", arch_kwargs={"num_classes": 10, "in_channels": 1, "image_size": 28,
                                                        "mean": [0.13], "std": [0.3]},
                          dataset="mnist5k", num_classes=10, input_shape=[1, 28, 28], mean=[0.13], std=[0.3], seed=0)


def test_onnx_matches_torch_within_1e5(cnn, x28, tmp_path):
    path = export_onnx(cnn, tmp_path / "m.onnx", (1, 28, 28))
    ob = BlackBox(OnnxBackend(path), num_classes=10, input_shape=(1, 28, 28))
    tb = BlackBox.from_module(cnn, input_shape=(1, 28, 28))
    assert float((ob(x28) - tb(x28)).abs().max()) <= 1e-5
    assert ob.stats.queries == tb.stats.queries == 8


def test_torchscript_backend(cnn, x28, tmp_path):
    p = tmp_path / "m.pt"
    torch.jit.save(torch.jit.trace(cnn, x28), str(p))
    bb = load_blackbox(p, input_shape=(1, 28, 28))
    torch.testing.assert_close(bb(x28), cnn(x28).detach())
    (tmp_path / "m2.json").write_text(json.dumps({"input_shape": [1, 28, 28]}))
    torch.jit.save(torch.jit.trace(cnn, x28), str(tmp_path / "m2.pt"))
    assert load_blackbox(tmp_path / "m2.pt").input_shape == (1, 28, 28)
    with pytest.raises(InputError, match=r"pass input_shape for TorchScript file m\.pt"):
        load_blackbox(p)


def test_checkpoint_roundtrip_and_backends(cnn, x28, tmp_path):
    save_checkpoint(tmp_path / "ck", cnn, _meta(cnn))
    m2, meta = load_checkpoint(tmp_path / "ck.safetensors")
    torch.testing.assert_close(m2(x28), cnn(x28))
    assert meta["arch"] == "smallcnn" and meta["dataset"] == "mnist5k"
    tb = load_blackbox(tmp_path / "ck", output="probs")
    ob = load_blackbox(tmp_path / "ck.json", backend="onnx", output="probs")
    assert float((tb(x28) - ob(x28)).abs().max()) <= 1e-5


def test_checkpoint_errors(cnn, tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint metadata not found"):
        load_checkpoint(tmp_path / "missing")
    save_checkpoint(tmp_path / "ck", cnn, _meta(cnn))
    with pytest.raises(CheckpointError, match="holds a 'smallcnn', expected 'lenet'"):
        load_checkpoint(tmp_path / "ck", expect_arch="lenet")
    with pytest.raises(CheckpointError, match="was trained on 'mnist5k', expected 'cifar10'"):
        load_checkpoint(tmp_path / "ck", expect_dataset="cifar10")
    w = tmp_path / "ck.safetensors"
    data = bytearray(w.read_bytes())
    data[-10] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="do not match the hash"):
        load_checkpoint(tmp_path / "ck")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        load_checkpoint(tmp_path / "bad")


def test_checkpoint_refuses_wrong_architecture(cnn, tmp_path):
    meta = _meta(cnn)
    meta.arch = "lenet"
    save_checkpoint(tmp_path / "ck", cnn, meta)
    with pytest.raises(CheckpointError, match="does not fit architecture 'lenet'"):
        load_checkpoint(tmp_path / "ck")


def test_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="ONNX file not found"):
        load_blackbox(tmp_path / "x.onnx")
    with pytest.raises(CheckpointError, match="TorchScript file not found"):
        TorchScriptBackend(tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="model not found"):
        load_blackbox(tmp_path / "nothing")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="cannot load ONNX file"):
        load_blackbox(tmp_path / "junk.onnx")
