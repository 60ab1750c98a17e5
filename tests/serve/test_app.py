"""The HTTP API contract, in process (FastAPI TestClient)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from bbdefense.errors import ConfigError, UnknownNameError
from bbdefense.models import BlackBox
from bbdefense.models.wire import decode_tensor, encode_tensor
from bbdefense.serve import ServeLimits, build_served_blackbox

from .serve_helpers import ALICE, BOB, SHAPE, NoisyInput


def _x(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def _predict(client: Any, x: Any, headers: dict[str, str] | None = None, **extra: Any) -> Any:
    inputs = encode_tensor(x) if isinstance(x, torch.Tensor) else x
    return client.post("/v1/predict", json={"inputs": inputs, **extra}, headers=headers or ALICE)


def _err(r: Any, status: int, code: str, match: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code and match in body["detail"], body


def test_health_info_and_openapi(make_client: Any, tiny_bb: BlackBox) -> None:
    c = make_client(tiny_bb, defense="noisy", class_names=[f"c{i}" for i in range(10)])
    assert c.get("/healthz").json() == {"status": "ok"}
    info = c.get("/v1/info").json()
    assert info["num_classes"] == 10 and info["input_shape"] == list(SHAPE) and info["output"] == "probs"
    assert info["classes"][3] == "c3" and info["bounds"] == [0.0, 1.0] and info["defense"] == "noisy"
    assert info["version"] and info["limits"]["max_batch"] == 256 and info["randomized"] is False
    spec = c.get("/openapi.json").json()
    assert {"/v1/info", "/v1/predict", "/healthz", "/v1/usage"} <= set(spec["paths"])
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"] == "#/components/schemas/PredictRequest"
    assert "WireTensor" in spec["components"]["schemas"] and "PredictRequest" in spec["components"]["schemas"]
    assert {"401", "413", "422", "429"} <= set(spec["paths"]["/v1/predict"]["post"]["responses"])


def test_predict_matches_the_local_black_box_in_both_encodings(make_client: Any, tiny_bb: BlackBox) -> None:
    c = make_client(tiny_bb)
    x = _x(5)
    want = tiny_bb.query(x)
    r = _predict(c, x)
    assert r.status_code == 200, r.text
    body = r.json()
    assert torch.equal(decode_tensor(body["outputs"]), want)
    assert (body["images"], body["used"], body["budget"], body["remaining"]) == (5, 5, 100, 95)
    r = _predict(c, x[:2].tolist())
    assert r.status_code == 200 and torch.equal(torch.tensor(r.json()["outputs"]), want[:2])
    # uint8 inputs are value / 255
    q = (x * 255).round() / 255
    r = _predict(c, encode_tensor(q, "uint8"), response_encoding="json")
    assert torch.allclose(torch.tensor(r.json()["outputs"]), tiny_bb.query(q), atol=1e-6)
    assert c.get("/v1/usage", headers=ALICE).json()["used"] == 5 + 2 + 5


def test_label_mode_returns_int64(make_client: Any, linear_model: Any) -> None:
    bb = BlackBox.from_module(linear_model, input_shape=SHAPE, output="label")
    c = make_client(bb)
    out = decode_tensor(_predict(c, _x(4)).json()["outputs"])
    assert out.dtype == torch.int64 and torch.equal(out, bb.query(_x(4)))


def test_keys(make_client: Any, tiny_bb: BlackBox) -> None:
    c = make_client(tiny_bb)
    _err(c.post("/v1/predict", json={"inputs": encode_tensor(_x(1))}), 401, "missing_key", "X-API-Key")
    _err(_predict(c, _x(1), {"X-API-Key": "guess"}), 401, "unknown_key", "unknown")
    r = _predict(c, _x(1), {"Authorization": "Bearer bob-secret"})
    assert r.status_code == 200 and r.json()["budget"] is None
    _err(c.get("/v1/usage"), 401, "missing_key", "missing API key")
    _err(c.get("/v1/predict"), 405, "http_405", "Method Not Allowed")
    _err(c.get("/nope"), 404, "http_404", "Not Found")


def test_budget_is_exact(make_client: Any, tiny_bb: BlackBox) -> None:
    c = make_client(tiny_bb)
    carol = {"X-API-Key": "carol-secret"}  # budget 5
    assert _predict(c, _x(3), carol).status_code == 200
    _err(_predict(c, _x(3), carol), 429, "budget_exceeded", "3 of 5 images used, a batch of 3 was refused")
    assert _predict(c, _x(2), carol).json()["remaining"] == 0
    _err(_predict(c, _x(1), carol), 429, "budget_exceeded", "5 of 5")
    assert c.get("/v1/usage", headers=carol).json() == {"key": "carol", "used": 5, "budget": 5, "remaining": 0,
                                                         "rate": None, "burst": None}


def test_rate_limit(make_client: Any, tiny_bb: BlackBox) -> None:
    c = make_client(tiny_bb)
    slow = {"X-API-Key": "slow-secret"}  # 0.001 requests/s, burst 1
    assert _predict(c, _x(1), slow).status_code == 200
    r = _predict(c, _x(1), slow)
    _err(r, 429, "rate_limited", "rate limit of 0.001 requests/s")
    assert int(r.headers["retry-after"]) >= 900
    assert c.get("/v1/usage", headers=slow).json()["used"] == 1  # refused requests are not charged


@pytest.mark.parametrize("payload,status,code,match", [
    ("{not json", 422, "malformed", "body"),
    ({"inputs": {"dtype": "float32", "shape": [1, 1, 8, 8]}}, 422, "malformed", "inputs"),
    ({"inputs": [], "extra": 1}, 422, "malformed", "extra"),
    ({"inputs": {"dtype": "float32", "shape": [1, 1, 8, 8], "data": "AAAA"}}, 422, "malformed", "needs 256"),
    ({"inputs": encode_tensor(torch.zeros(1, 1, 4, 4))}, 422, "invalid_images", "(N, 1, 8, 8)"),
    ({"inputs": encode_tensor(torch.full((1, 1, 8, 8), float("nan")))}, 422, "invalid_images", "NaN"),
    ({"inputs": encode_tensor(torch.full((1, 1, 8, 8), 2.0))}, 422, "invalid_images", "[0, 1]"),
    ({"inputs": encode_tensor(torch.zeros(1, 1, 8, 8, dtype=torch.int64), "int64")}, 422, "invalid_images",
     "float32"),
    ({"inputs": encode_tensor(torch.zeros(0, 1, 8, 8))}, 422, "invalid_images", "empty batch"),
    ({"inputs": encode_tensor(torch.zeros(9, 1, 8, 8))}, 413, "batch_too_large", "send at most 8 images per request"),
    ({"inputs": torch.zeros(3, 1, 8, 8).tolist()}, 413, "batch_too_large", "at most 2 images per request as JSON"),
])
def test_malformed_requests_get_precise_4xx(make_client: Any, tiny_bb: BlackBox, payload: Any, status: int,
                                            code: str, match: str) -> None:
    c = make_client(tiny_bb, limits=ServeLimits(max_batch=8, max_json_images=2))
    content = payload if isinstance(payload, str) else json.dumps(payload)
    r = c.post("/v1/predict", content=content, headers={**ALICE, "content-type": "application/json"})
    _err(r, status, code, match)
    assert c.get("/v1/usage", headers=ALICE).json()["used"] == 0  # nothing charged


def test_body_size_limit(make_client: Any, tiny_bb: BlackBox) -> None:
    c = make_client(tiny_bb, limits=ServeLimits(max_body_bytes=2000))
    _err(_predict(c, _x(8)), 413, "too_large", "exceeds the limit of 2000 bytes")

    def chunks() -> Any:  # no Content-Length: the streamed body is counted
        for _ in range(10):
            yield b" " * 500

    _err(c.post("/v1/predict", content=chunks(), headers=ALICE), 413, "too_large", "2000 bytes")


def test_model_failure_is_refunded(make_client: Any) -> None:
    def broken(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    bb = BlackBox.from_callable(broken, num_classes=3, input_shape=SHAPE)
    c = make_client(bb)
    _err(_predict(c, _x(2)), 500, "model_error", "charge refunded")
    assert c.get("/v1/usage", headers=ALICE).json()["used"] == 0
    outcomes = [r["outcome"] for r in c.app.state.store.audit_rows()]
    assert outcomes == ["charged", "refunded"]


def test_open_api_without_keys(make_client: Any, tiny_bb: BlackBox, tmp_path: Path) -> None:
    c = make_client(tiny_bb, keys=None, db_path=tmp_path / "open.db", anonymous_budget=3)
    assert c.get("/v1/info").json()["auth"] == "none"
    assert _predict(c, _x(3), {}).status_code == 200
    _err(_predict(c, _x(1), {}), 429, "budget_exceeded", "'anonymous'")


def test_audit_rows_hash_the_images(make_client: Any, tiny_bb: BlackBox) -> None:
    from bbdefense.models.wire import batch_digest

    c = make_client(tiny_bb)
    x = _x(3)
    seq = _predict(c, x, BOB).json()["audit_seq"]
    (row,) = [r for r in c.app.state.store.audit_rows() if r["seq"] == seq]
    assert row["key"] == "bob" and row["images"] == 3 and row["sha256"] == batch_digest(x)


# ---------------------------------------------------------------------- defenses
def test_defense_wraps_the_checkpoint(tiny_ckpt: Path, make_client: Any) -> None:
    reg = {"noisy": NoisyInput}
    bb = build_served_blackbox(tiny_ckpt, defense="noisy", defense_config={"sigma": 0.2}, registry=reg)
    assert bb.randomized and isinstance(bb.backend.module, NoisyInput)  # type: ignore[attr-defined]
    assert bb.backend.module.sigma == 0.2  # type: ignore[attr-defined]
    c = make_client(bb, defense="noisy")
    info = c.get("/v1/info").json()
    assert info["randomized"] is True and info["defense"] == "noisy"
    x = _x(4)
    a = decode_tensor(_predict(c, x).json()["outputs"])
    b = decode_tensor(_predict(c, x).json()["outputs"])
    assert not torch.equal(a, b)  # a randomized defense answers differently to the same images
    with pytest.raises(UnknownNameError, match="unknown defense 'nope'; choose one of: noisy"):
        build_served_blackbox(tiny_ckpt, defense="nope", registry=reg)
    with pytest.raises(ConfigError, match="rejected its config"):
        build_served_blackbox(tiny_ckpt, defense="noisy", defense_config={"colour": 1}, registry=reg)


def test_cli_unknown_defense_is_one_clear_line(tiny_ckpt: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    from bbdefense.cli import main
    from bbdefense.registry import Registry

    fake = types.ModuleType("bbdefense.defenses")
    reg: Registry[Any] = Registry("defense")
    reg.add("noisy", NoisyInput)
    fake.DEFENSES = reg  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bbdefense.defenses", fake)
    rc = main(["serve", "--model", str(tiny_ckpt), "--defense", "rfdx", "--port", "1"])
    assert rc == 2
    assert "unknown defense 'rfdx'" in capsys.readouterr().err
