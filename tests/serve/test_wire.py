"""The wire encoding: exact round trips and precise errors for every malformed field."""

from __future__ import annotations

import base64
import json

import pytest
import torch

from bbdefense.errors import InputError
from bbdefense.models.wire import batch_digest, decode_any, decode_nested, decode_tensor, encode_tensor


def test_float32_round_trip_is_bit_exact() -> None:
    x = torch.rand(3, 1, 5, 7, generator=torch.Generator().manual_seed(0))
    x[0, 0, 0, 0] = 1e-38  # subnormal-adjacent values survive too
    enc = encode_tensor(x)
    assert enc["dtype"] == "float32" and enc["shape"] == [3, 1, 5, 7]
    y = decode_tensor(json.loads(json.dumps(enc)))
    assert y.dtype == torch.float32 and torch.equal(x, y)


def test_uint8_round_trip_and_refusal_off_grid() -> None:
    q = torch.randint(0, 256, (2, 3, 4, 4), generator=torch.Generator().manual_seed(1))
    x = q.float() / 255
    enc = encode_tensor(x, "uint8")
    assert len(base64.b64decode(enc["data"])) == x.numel()  # one byte per pixel
    assert torch.equal(decode_tensor(enc), x)
    with pytest.raises(InputError, match="8-bit grid"):
        encode_tensor(x + 0.001, "uint8")


def test_int64_labels_round_trip() -> None:
    y = torch.tensor([0, 9, 3, 2**40])
    assert torch.equal(decode_tensor(encode_tensor(y, "int64")), y)


def test_nested_lists_round_trip_exactly() -> None:
    x = torch.rand(2, 1, 3, 3, generator=torch.Generator().manual_seed(2))
    back = decode_nested(json.loads(json.dumps(x.tolist())))
    assert torch.equal(back, x)


@pytest.mark.parametrize("obj,match", [
    ([1, 2], "must be an object"),
    ({"dtype": "float32", "shape": [1]}, "lacks field"),
    ({"dtype": "float16", "shape": [1], "data": ""}, "unknown wire dtype 'float16'"),
    ({"dtype": "float32", "shape": [-1], "data": ""}, "non-negative"),
    ({"dtype": "float32", "shape": [True], "data": ""}, "non-negative"),
    ({"dtype": "float32", "shape": "1,2", "data": ""}, "'shape' must be a list"),
    ({"dtype": "float32", "shape": [1] * 9, "data": ""}, "'shape' must be a list"),
    ({"dtype": "float32", "shape": [2], "data": "!!!"}, "not valid base64"),
    ({"dtype": "float32", "shape": [2], "data": "é"}, "not valid base64"),
    ({"dtype": "float32", "shape": [2], "data": base64.b64encode(b"1234567").decode()},
     "holds 7 bytes but shape \\[2\\] of float32 needs 8"),
    ({"dtype": "float32", "shape": [2], "data": 5}, "base64 string"),
    ({"dtype": "uint8", "shape": [10**6, 10**6], "data": ""}, "more than the limit 1000"),
])
def test_decode_errors_name_the_problem(obj: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        decode_tensor(obj, max_elements=1000)


@pytest.mark.parametrize("obj,match", [
    ([[1.0, 2.0], [3.0]], "ragged"),
    ([[1.0, "a"]], "expected a number"),
    ([[True, 1.0]], "expected a number"),
    ([[[[[[[[[1.0]]]]]]]]], "'shape' must be a list"),
])
def test_nested_errors(obj: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        decode_nested(obj)


def test_digest_is_the_same_for_both_encodings() -> None:
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    a, enc_a = decode_any(encode_tensor(x))
    b, enc_b = decode_any(x.tolist())
    assert (enc_a, enc_b) == ("base64", "json")
    assert batch_digest(a) == batch_digest(b) == batch_digest(x)
    assert batch_digest(x) != batch_digest(x[:1])
