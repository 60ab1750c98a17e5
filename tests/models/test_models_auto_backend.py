"""backend="auto": eager below the warm-up (exact eager answers, no export), then the fastest path that agrees
with eager within the tolerance (ONNX Runtime, channels_last, eager), what ran recorded, forced paths kept."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from bbdefense.certify import Smooth, make_noise
from bbdefense.models import BlackBox, CheckpointMeta, build_model, load_blackbox, onnx_auto, save_checkpoint
from bbdefense.models.backends import OnnxBackend, TorchBackend
from bbdefense.models.onnx_auto import AUTO_TOL, AutoBackend, agreement, fast_path

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
SHAPE = (1, 28, 28)


def lenet() -> nn.Module:
    torch.manual_seed(0)
    return build_model("lenet", num_classes=10, in_channels=1, image_size=28, mean=[0.13], std=[0.3]).eval()


def x28(n: int = 8) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(1))


def test_agreement_is_absolute_below_one_and_relative_above() -> None:
    ref = torch.tensor([[0.5, -20.0]])
    assert agreement(ref + torch.tensor([[9e-6, 1.9e-4]]), ref)[0]  # 9e-6 abs; 1.9e-4 / 20 = 9.5e-6 rel
    assert not agreement(ref + torch.tensor([[2e-5, 0.0]]), ref)[0]  # 2e-5 abs at |logit| 0.5
    assert not agreement(ref + torch.tensor([[0.0, 4e-4]]), ref)[0]  # 2e-5 rel at |logit| 20
    assert not agreement(torch.full_like(ref, float("nan")), ref)[0]


def test_below_warmup_runs_eager_exactly_and_never_exports(monkeypatch: pytest.MonkeyPatch) -> None:
    m = lenet()
    monkeypatch.setattr(onnx_auto, "fast_path", lambda *a, **k: pytest.fail("exported below the warm-up"))
    bb = BlackBox(AutoBackend(m, SHAPE, warmup=16), num_classes=10, input_shape=SHAPE)
    x = x28(8)
    assert torch.equal(bb(x), m(x).detach()) and torch.equal(bb(x), m(x).detach())  # 16 images: still eager
    assert bb.describe()["backend_info"] == {"requested": "auto", "path": "torch", "decided": False,
                                             "warmup": 16, "tol": AUTO_TOL}
    assert bb.stats.queries == 16


@pytest.mark.skipif(not HAS_ORT, reason="needs the [onnx] extra")
def test_switches_to_onnx_past_warmup_within_tolerance() -> None:
    m = lenet()
    be = AutoBackend(m, SHAPE, warmup=10)
    bb = BlackBox(be, num_classes=10, input_shape=SHAPE)
    x = x28(8)
    bb(x)
    out = bb(x)  # 16 > 10: this call runs the fast path
    info = bb.describe()["backend_info"]
    assert isinstance(info, dict)
    assert info["path"] == "onnx" and info["decided"] and info["switched_after"] == 8
    assert isinstance(be.active, OnnxBackend)
    assert agreement(out, m(x).detach())[0]
    assert bb.stats.queries == 16  # counted once per image, as any backend
    # cached per module: a second black box of the same module reuses the session without exporting
    be2 = AutoBackend(m, SHAPE, warmup=0)
    be2.forward(x)
    assert be2.active is be.active


def test_export_failure_falls_back_to_channels_last(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*a: object, **k: object) -> None:
        raise RuntimeError("Unsupported: ONNX export of operator foo")

    monkeypatch.setattr("bbdefense.models.onnx_export.export_onnx", broken)
    backend, info = fast_path(lenet(), SHAPE)
    if HAS_ORT:
        assert info["tried"] == ["onnx: RuntimeError: Unsupported: ONNX export of operator foo"]
    assert info["path"] == "channels_last" and isinstance(backend, TorchBackend) and backend.memory_format


def test_disagreement_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A candidate off by 1e-3 is not taken; with tol=0 a path must be bit-exact (else eager)."""
    monkeypatch.setattr(onnx_auto, "agreement", lambda out, ref, tol=AUTO_TOL: (False, 1e-3, 1e-3))
    backend, info = fast_path(lenet(), SHAPE)
    assert info["path"] == "torch" and type(backend) is TorchBackend
    assert any(t.startswith("channels_last: differs from eager by 0.001") for t in info["tried"])


def test_no_fast_path_for_a_randomized_module_or_without_onnx_and_conv(monkeypatch: pytest.MonkeyPatch) -> None:
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    mlp.randomized = True  # type: ignore[assignment]
    assert fast_path(mlp, SHAPE)[1]["tried"] == ["randomized module: an export would drop its randomness"]
    monkeypatch.setattr(onnx_auto.importlib.util, "find_spec", lambda name: None)
    mlp2 = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    _, info = fast_path(mlp2, SHAPE)
    assert info["path"] == "torch" and info["tried"][-1] == "channels_last: no Conv2d"
    assert "not installed" in info["tried"][0]


def test_resolver_default_is_auto_and_torch_forces_eager(tmp_path: object) -> None:
    from pathlib import Path

    m = lenet()
    meta = CheckpointMeta(arch="lenet", arch_kwargs={"num_classes": 10, "in_channels": 1, "image_size": 28,
                                                     "mean": [0.13], "std": [0.3]},
                          dataset="mnist5k", num_classes=10, input_shape=list(SHAPE), mean=[0.13], std=[0.3], seed=0)
    ck = save_checkpoint(Path(str(tmp_path)) / "ck", m, meta)
    auto = load_blackbox(ck)
    assert isinstance(auto.backend, AutoBackend) and auto.describe()["backend_info"]["path"] == "torch"  # type: ignore[index]
    forced = load_blackbox(ck, backend="torch")
    assert type(forced.backend) is TorchBackend and "backend_info" not in forced.describe()
    # a certification below the warm-up gives the eager answer exactly
    x = x28(2)
    certs = [Smooth(b, make_noise("gaussian", sigma=0.25)).certify(x, n0=10, n=50, seed=0) for b in (auto, forced)]
    assert [c.counts for c in certs[0]] == [c.counts for c in certs[1]]


@pytest.mark.skipif(not HAS_ORT, reason="needs the [onnx] extra")
def test_smooth_announces_its_plan_so_a_large_certification_runs_on_one_path() -> None:
    m = lenet()
    be = AutoBackend(m, SHAPE, warmup=100)
    bb = BlackBox(be, num_classes=10, input_shape=SHAPE)
    Smooth(bb, make_noise("gaussian", sigma=0.25)).certify(x28(2), n0=10, n=60, seed=0)  # 140 > 100 planned
    assert be.info["decided"] and be.info["switched_after"] == 0 and be.info["path"] == "onnx"
