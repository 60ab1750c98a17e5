"""Property-based fuzzing of the request schema (hypothesis): no 5xx ever, and every rejected request
gets a 4xx with a JSON message."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bbdefense.models import BlackBox
from bbdefense.serve import ServeLimits

from .serve_helpers import SHAPE

SETTINGS = settings(max_examples=80, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20)
shapes = st.lists(st.one_of(st.integers(-3, 10), st.just(2**40), st.floats(0, 3), st.text(max_size=2)),
                  max_size=6) | json_values
datas = (st.binary(max_size=600).map(lambda b: base64.b64encode(b).decode()) | st.text(max_size=40) | json_values)
wire = st.fixed_dictionaries(
    {}, optional={"dtype": st.sampled_from(["float32", "uint8", "int64", "float16", ""]) | json_values,
                  "shape": shapes, "data": datas, "extra": json_values})
nested = st.recursive(st.floats(-1, 2) | st.integers(-1, 2) | st.booleans() | st.text(max_size=2),
                      lambda inner: st.lists(inner, min_size=0, max_size=8), max_leaves=150)
pixel = st.floats(-0.5, 1.5) | st.sampled_from([0.0, 1.0, float("nan"), float("inf")]) | st.integers(0, 1)
shaped = st.integers(1, 5).flatmap(lambda n: st.lists(st.lists(st.lists(st.lists(
    pixel, min_size=8, max_size=8), min_size=8, max_size=8), min_size=1, max_size=1), min_size=n, max_size=n))
bodies = st.one_of(
    st.fixed_dictionaries({"inputs": wire | nested | shaped},
                          optional={"response_encoding": st.sampled_from(["json", "base64", "xml"]) | json_values}),
    json_values,
)


def _check(r: Any) -> None:
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        body = r.json()
        assert isinstance(body.get("detail"), str) and body["detail"], body
        assert isinstance(body.get("code"), str) and body["code"]
    else:
        assert r.status_code == 200 and {"outputs", "images", "used"} <= set(r.json())


@pytest.fixture
def client(make_client: Any, tiny_bb: BlackBox) -> Any:
    return make_client(tiny_bb, limits=ServeLimits(max_batch=8, max_body_bytes=64 * 1024, max_json_images=4))


@SETTINGS
@given(body=bodies)
def test_fuzzed_json_bodies_never_5xx(client: Any, body: Any) -> None:
    _check(client.post("/v1/predict", content=json.dumps(body), headers={"X-API-Key": "bob-secret",
                                                                         "content-type": "application/json"}))


@SETTINGS
@given(raw=st.binary(max_size=300), key=st.sampled_from(["bob-secret", "", "nope"]) | st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=10),
       ctype=st.sampled_from(["application/json", "text/plain", "application/octet-stream"]))
def test_fuzzed_raw_bytes_and_keys_never_5xx(client: Any, raw: bytes, key: str, ctype: str) -> None:
    _check(client.post("/v1/predict", content=raw, headers={"X-API-Key": key, "content-type": ctype}))


@SETTINGS
@given(n=st.integers(0, 10), c=st.integers(0, 2), h=st.integers(0, 9), dtype=st.sampled_from(["float32", "uint8"]),
       fill=st.sampled_from([0.0, 0.5, 1.0, -0.1, 1.5, float("nan"), float("inf")]))
def test_well_formed_tensors_of_any_shape(client: Any, n: int, c: int, h: int, dtype: str, fill: float) -> None:
    import numpy as np

    npd = np.float32 if dtype == "float32" else np.uint8
    val = fill if dtype == "float32" else (0 if not np.isfinite(fill) else int(min(max(fill, 0), 1) * 255))
    arr = np.full((n, c, h, h), val, dtype=npd)
    body = {"inputs": {"dtype": dtype, "shape": list(arr.shape), "data": base64.b64encode(arr.tobytes()).decode()}}
    r = client.post("/v1/predict", json=body, headers={"X-API-Key": "bob-secret"})
    _check(r)
    ok = (n >= 1 and n <= 8 and (c, h, h) == SHAPE and (dtype == "uint8" or 0.0 <= fill <= 1.0))
    assert (r.status_code == 200) == ok, (r.status_code, r.text)
