"""Property test: the request validator and decoder raise nothing but ``BadRequest``.

Bodies are built from a valid KServe v2 request with one field (any field, at any depth)
replaced by arbitrary JSON, or are arbitrary JSON outright, serialised with the standard
library so that NaN, Infinity and integers beyond 64 bits occur too; binary-extension
bodies get an arbitrary ``Inference-Header-Content-Length`` and arbitrary trailing bytes.
Whatever the router accepts, the worker's decoder either turns into finite arrays of the
declared type and shape or refuses with ``BadRequest`` (a 400), never anything else (a 500).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kairos.protocol.tensors import (
    DATATYPES,
    BadRequest,
    TensorSpec,
    decode_inputs,
    parse_json_length,
    validate_request,
)

SIG = (TensorSpec("dense", "FP32", (-1, 3)), TensorSpec("sparse", "INT64", (-1, 2)))
MAX_BATCH = 8

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([1e300, -1e300, 1e39, 3.5e38, 65504.0, 2**63, -(2**63) - 1, 2**64])
    | st.text(max_size=8)
    | st.sampled_from(list(DATATYPES))
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def valid_doc(batch: int) -> dict[str, Any]:
    return {
        "id": "q",
        "inputs": [
            {"name": "dense", "datatype": "FP32", "shape": [batch, 3], "data": [0.5] * 3 * batch},
            {"name": "sparse", "datatype": "INT64", "shape": [batch, 2], "data": [1] * 2 * batch},
        ],
    }


# Where a replacement goes: a key path into the valid document (ints index lists).
FIELDS = ("name", "datatype", "shape", "data", "parameters")
PATHS = [
    (),
    ("id",),
    ("inputs",),
    ("parameters",),
    ("outputs",),
    *[("inputs", k, f) for k in (0, 1) for f in FIELDS],
    ("inputs", 0, "shape", 0),
    ("inputs", 0, "shape", 1),
    ("inputs", 0, "data", 0),
    ("inputs", 1, "data", 1),
    ("inputs", 0, "parameters", "binary_data_size"),
]


def replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        child = doc.get(head, {} if rest and isinstance(rest[0], str) else [])
        return doc | {head: replaced(child, rest, value)}
    if isinstance(doc, list) and isinstance(head, int) and head < len(doc):
        return [*doc[:head], replaced(doc[head], rest, value), *doc[head + 1 :]]
    return doc


def check_one(body: bytes, header: str | None, signature: tuple[TensorSpec, ...] | None) -> None:
    try:
        json_length = parse_json_length(header, len(body))
        parsed = validate_request(body, signature, MAX_BATCH, json_length)
    except BadRequest:
        return
    assert 1 <= parsed.batch_size <= MAX_BATCH
    try:
        arrays = decode_inputs(body, json_length)
    except BadRequest:
        return
    for arr in arrays.values():
        assert arr.shape[0] == parsed.batch_size
        if arr.dtype.kind == "f":
            assert np.isfinite(arr).all()


def encode(doc: Any) -> bytes:
    return json.dumps(doc, allow_nan=True).encode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.integers(1, 3),
    path=st.sampled_from(PATHS),
    value=json_values,
    strict=st.booleans(),
)
def test_any_json_in_any_field_is_a_bad_request_or_valid(batch, path, value, strict):
    doc = replaced(valid_doc(batch), path, value)
    check_one(encode(doc), None, SIG if strict else None)


@settings(max_examples=150, deadline=None)
@given(doc=json_values)
def test_arbitrary_json_bodies(doc):
    check_one(encode(doc), None, None)


@settings(max_examples=200, deadline=None)
@given(
    batch=st.integers(1, 3),
    size_delta=st.integers(-8, 8),
    header=st.one_of(st.none(), st.text(max_size=6), st.integers(-5, 10_000).map(str)),
    tail=st.binary(max_size=64),
    special=st.sampled_from([None, math.nan, math.inf, -math.inf, 1e300]),
)
def test_binary_extension_bodies(batch, size_delta, header, tail, special):
    values = np.full(batch * 3, 0.5, dtype="<f4")
    if special is not None:
        with np.errstate(over="ignore"):
            values[0] = np.float32(special)
    raw = values.tobytes() + np.ones(batch * 2, dtype="<i8").tobytes()
    doc = valid_doc(batch)
    for item, size in zip(doc["inputs"], (batch * 12 + size_delta, batch * 16), strict=True):
        del item["data"]
        item["parameters"] = {"binary_data_size": size}
    head = encode(doc)
    body = head + raw + tail
    check_one(body, str(len(head)) if header is None else header, SIG)


def test_non_finite_and_overflowing_values_are_refused_at_decode():
    """The worker's decoder refuses null, NaN, infinity and values that overflow FP32."""
    for bad in (None, "NaN", "Infinity", 1e300, -1e39):
        doc = valid_doc(1)
        doc["inputs"][0]["data"][1] = bad
        body = encode(doc)
        validate_request(body, SIG, MAX_BATCH)  # the router does not read values
        try:
            decode_inputs(body)
        except BadRequest as err:
            assert "dense" in str(err)
        else:
            raise AssertionError(f"{bad!r} was decoded")
