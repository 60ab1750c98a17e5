"""HttpBlackBox / JsonApiBackend: same outputs and counts as local black boxes, typed errors, retries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from bbdefense.errors import AccessError, QueryBudgetExceeded, RemoteError
from bbdefense.models import BlackBox, load_blackbox
from bbdefense.models.wire import encode_tensor
from bbdefense.serve import HttpBlackBox, ServeLimits, json_api_blackbox

from .serve_helpers import SHAPE


def _x(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def test_torch_onnx_and_http_agree_on_outputs_and_counts(tiny_ckpt: Path, make_client: Any) -> None:
    torch_bb = load_blackbox(tiny_ckpt, output="probs")
    onnx_bb = load_blackbox(tiny_ckpt, backend="onnx", output="probs")
    served = load_blackbox(tiny_ckpt, output="probs")
    c = make_client(served, limits=ServeLimits(max_batch=16))
    http_bb = HttpBlackBox("http://testserver", "alice-secret", client=c)
    assert (http_bb.num_classes, http_bb.input_shape, http_bb.output) == (10, SHAPE, "probs")
    batches = [_x(1, 1), _x(7, 2), _x(40, 3)]  # 40 > max_batch: split into 16 + 16 + 8
    for x in batches:
        ref = torch_bb.query(x)
        assert (onnx_bb.query(x) - ref).abs().max() <= 1e-5
        assert (http_bb.query(x) - ref).abs().max() <= 1e-5
        labels = torch_bb.predict_label(x)
        assert torch.equal(http_bb.predict_label(x), labels) and torch.equal(onnx_bb.predict_label(x), labels)
    n = 2 * sum(len(x) for x in batches)
    assert torch_bb.stats.queries == onnx_bb.stats.queries == http_bb.stats.queries == n
    assert http_bb.usage()["used"] == n == served.stats.queries
    assert http_bb.stats.calls == 2 * (1 + 1 + 3)  # one call per HTTP request
    # audit queries are forwarded but not charged locally (the server charges every image it sees)
    http_bb.audit(_x(2))
    assert http_bb.stats.queries == n and http_bb.stats.audit_queries == 2


def test_coarser_local_output_and_uint8(tiny_ckpt: Path, make_client: Any) -> None:
    served = load_blackbox(tiny_ckpt, output="probs", top_k=3)
    c = make_client(served)
    lab = HttpBlackBox("http://testserver", "bob-secret", client=c, output="label")
    x = _x(6)
    assert torch.equal(lab.query(x), served.query(x).argmax(1))
    probs = HttpBlackBox("http://testserver", "bob-secret", client=c, encoding="uint8")
    assert probs.top_k == 3
    q = (x * 255).round() / 255
    assert torch.equal(probs.query(q), served.query(q))
    auto = HttpBlackBox("http://testserver", "bob-secret", client=c, encoding="auto")
    assert torch.equal(auto.query(q), served.query(q)) and torch.equal(auto.query(x), served.query(x))
    with pytest.raises(AccessError, match="cannot reveal logits"):
        HttpBlackBox("http://testserver", "bob-secret", client=c, output="logits")


def test_budget_maps_to_query_budget_exceeded(make_client: Any, tiny_bb: BlackBox) -> None:
    c = make_client(tiny_bb)
    bb = HttpBlackBox("http://testserver", "carol-secret", client=c)  # budget 5 on the server
    bb.query(_x(4))
    with pytest.raises(QueryBudgetExceeded, match="4 of 5 images used, a batch of 2 was refused"):
        bb.query(_x(2))
    bb.query(_x(1))
    assert bb.stats.queries == 5 == bb.usage()["used"]


def test_empty_batches_send_no_request(make_client: Any, tiny_bb: BlackBox) -> None:
    c = make_client(tiny_bb)
    bb = HttpBlackBox("http://testserver", "alice-secret", client=c)
    assert bb.query(_x(0)).shape == (0, 10) and bb.stats.queries == 0 and bb.usage()["used"] == 0
    lab = HttpBlackBox("http://testserver", "alice-secret", client=c, output="label")
    assert lab.query(_x(0)).dtype == torch.int64


def test_bad_key_is_an_access_error(make_client: Any, tiny_bb: BlackBox) -> None:
    c = make_client(tiny_bb)
    bb = HttpBlackBox("http://testserver", "wrong", client=c)  # /v1/info needs no key
    with pytest.raises(AccessError, match="unknown or revoked API key"):
        bb.query(_x(1))
    assert bb.stats.queries == 0


def _info(output: str = "logits") -> dict[str, Any]:
    return {"output": output, "num_classes": 3, "input_shape": list(SHAPE), "limits": {"max_batch": 8,
            "max_body_bytes": 1 << 20}, "randomized": False, "name": "mock"}


def _mock(responses: list[Any]) -> tuple[httpx.Client, list[httpx.Request]]:
    """A client whose predict calls answer the given responses (or raise the given exceptions) in order."""
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/v1/info":
            return httpx.Response(200, json=_info())
        seen.append(req)
        item = responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.Client(transport=httpx.MockTransport(handler)), seen


def _ok(n: int) -> httpx.Response:
    return httpx.Response(200, json={"outputs": encode_tensor(torch.zeros(n, 3))})


def test_transient_errors_are_retried_with_backoff() -> None:
    waits: list[float] = []
    client, seen = _mock([httpx.Response(503), httpx.Response(429, json={"code": "rate_limited", "detail": "slow"},
                                                                     headers={"Retry-After": "2"}),
                          httpx.ConnectError("refused"), _ok(2)])
    bb = HttpBlackBox("http://mock", "k", client=client, retries=3, backoff=0.25, sleep=waits.append)
    assert bb.query(_x(2)).shape == (2, 3)
    assert waits == [0.25, 2.0, 1.0] and len(seen) == 4 and bb.stats.queries == 2
    assert seen[0].headers["x-api-key"] == "k"


def test_retries_give_up_with_remote_error() -> None:
    client, _ = _mock([httpx.Response(503, json={"detail": "down"})] * 3)
    bb = HttpBlackBox("http://mock", client=client, retries=2, sleep=lambda s: None)
    with pytest.raises(RemoteError, match="503"):
        bb.query(_x(1))
    assert bb.stats.queries == 0


def test_timeouts_are_not_retried() -> None:
    client, seen = _mock([httpx.ReadTimeout("slow"), _ok(1)])
    bb = HttpBlackBox("http://mock", client=client, retries=3, sleep=lambda s: None)
    with pytest.raises(RemoteError, match=r"timed out.*may have charged"):
        bb.query(_x(1))
    assert len(seen) == 1 and bb.stats.queries == 0


def test_unreadable_answers_are_remote_errors() -> None:
    client, _ = _mock([httpx.Response(200, json={"outputs": encode_tensor(torch.zeros(5, 3))}),
                       httpx.Response(200, text="<html>")])
    bb = HttpBlackBox("http://mock", client=client, sleep=lambda s: None)
    with pytest.raises(RemoteError, match="shape \\(5, 3\\) for 2 images"):
        bb.query(_x(2))
    with pytest.raises(RemoteError, match="unreadable"):
        bb.query(_x(2))


def test_json_api_adapter_for_a_users_own_api(linear_model: Any) -> None:
    """A user's API taking {"images": [...]} and answering {"predictions": [{"scores": [...]}]}."""
    budget = {"left": 10}

    def handler(req: httpx.Request) -> httpx.Response:
        import json

        imgs = torch.tensor(json.loads(req.content)["images"])
        if len(imgs) > budget["left"]:
            return httpx.Response(402, json={"detail": "payment required"})
        budget["left"] -= len(imgs)
        probs = torch.softmax(linear_model(imgs), 1)
        return httpx.Response(200, json={"predictions": [{"scores": p} for p in probs.tolist()]})

    bb = json_api_blackbox("http://api.example/classify", lambda x: {"images": x.tolist()},
                           lambda body: [p["scores"] for p in body["predictions"]], num_classes=10,
                           input_shape=SHAPE, returns="probs", max_batch=4,
                           client=httpx.Client(transport=httpx.MockTransport(handler)))
    x = _x(6)
    ref = torch.softmax(linear_model(x), 1)
    assert (bb.query(x) - ref).abs().max() <= 1e-6 and bb.stats.queries == 6
    with pytest.raises(QueryBudgetExceeded, match="payment required"):
        bb.query(x)  # 4 answered, then 2 refused: the local count follows the remote charges
    assert bb.stats.queries == 10 and budget["left"] == 0


def test_server_refusals_map_to_input_errors_with_a_hint() -> None:
    from bbdefense.errors import InputError

    client, _ = _mock([httpx.Response(422, json={"code": "invalid_images",
                                                 "detail": "expected images in [0, 1], got values in [-0.3, 1.2]"})])
    bb = HttpBlackBox("http://mock", client=client)
    with pytest.raises(InputError,
                       match=r"422 invalid_images.*got values in \[-0\.3, 1\.2\].*Smooth\(\.\.\., clip=True\)"):
        bb.query(_x(1))
