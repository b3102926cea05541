"""Request validation and the worker frame format (no processes)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from kairos.protocol.frames import frame, split_frame, unframe
from kairos.protocol.tensors import (
    BadRequest,
    TensorSpec,
    decode_inputs,
    encode_outputs,
    parse_json_length,
    validate_request,
)

SIG = (TensorSpec("dense", "FP32", (-1, 13)), TensorSpec("sparse", "INT64", (-1, 8)))


def body(batch: int = 4, **overrides: object) -> bytes:
    dense = {"name": "dense", "datatype": "FP32", "shape": [batch, 13], "data": [0.5] * 13 * batch}
    sparse = {"name": "sparse", "datatype": "INT64", "shape": [batch, 8], "data": [3] * 8 * batch}
    doc: dict[str, object] = {"id": "q1", "inputs": [dense, sparse]}
    doc.update(overrides)
    return orjson.dumps(doc)


def test_valid_request_gives_batch_and_id() -> None:
    parsed = validate_request(body(7), SIG, 1000)
    assert (parsed.batch_size, parsed.request_id) == (7, "q1")


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not an object"),
        (orjson.dumps({"inputs": []}), "no 'inputs'"),
        (body(4, id=5), "'id'"),
        (body(2000), "outside the profiled range"),
        (
            orjson.dumps(
                {
                    "inputs": [
                        {"name": "dense", "datatype": "FP32", "shape": [2, 13], "data": [0.0] * 5}
                    ]
                }
            ),
            "has 5 values",
        ),
        (
            orjson.dumps(
                {
                    "inputs": [
                        {
                            "name": "dense",
                            "datatype": "STRING",
                            "shape": [1, 13],
                            "data": [0.0] * 13,
                        }
                    ]
                }
            ),
            "not supported",
        ),
        (
            orjson.dumps(
                {
                    "inputs": [
                        {
                            "name": "dense",
                            "datatype": "FP32",
                            "shape": [1, 13],
                            "data": [[0.0] * 13],
                        }
                    ]
                }
            ),
            "nested",
        ),
    ],
)
def test_bad_requests_name_the_problem(raw: bytes, needle: str) -> None:
    with pytest.raises(BadRequest, match=needle):
        validate_request(raw, SIG, 1000)


def test_signature_mismatches_are_rejected() -> None:
    doc = orjson.loads(body(3))
    doc["inputs"][0]["shape"] = [3, 12]
    doc["inputs"][0]["data"] = [0.1] * 36
    with pytest.raises(BadRequest, match="reshape 'dense'"):
        validate_request(orjson.dumps(doc), SIG, 1000)
    doc = orjson.loads(body(3))
    doc["inputs"][1]["datatype"] = "INT32"
    with pytest.raises(BadRequest, match="datatype INT32"):
        validate_request(orjson.dumps(doc), SIG, 1000)
    doc = orjson.loads(body(3))
    doc["inputs"][1]["shape"] = [2, 8]
    doc["inputs"][1]["data"] = [1] * 16
    with pytest.raises(BadRequest, match="disagree on the batch size"):
        validate_request(orjson.dumps(doc), SIG, 1000)
    doc = orjson.loads(body(3))
    doc["inputs"].pop()
    with pytest.raises(BadRequest, match="the model takes"):
        validate_request(orjson.dumps(doc), SIG, 1000)


def test_no_signature_accepts_any_names() -> None:
    raw = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [1, 2]}]}
    )
    assert validate_request(raw, None, 10).batch_size == 2


def test_frame_round_trip() -> None:
    header, payload = unframe(frame({"qid": 3, "batch": 10}, b"xyz"))
    assert header == {"qid": 3, "batch": 10}
    assert payload == b"xyz" and isinstance(payload, bytes)


def test_split_frame_views_the_payload_without_copying() -> None:
    message = frame({"qid": 4}, b"payload")
    header, view = split_frame(message)
    assert header == {"qid": 4}
    assert isinstance(view, memoryview) and view.obj is message and view == b"payload"
    with pytest.raises(ValueError, match="shorter than its length prefix"):
        split_frame(b"\x00")


def test_tensors_round_trip_through_json() -> None:
    inputs = decode_inputs(body(2))
    assert inputs["dense"].shape == (2, 13) and inputs["dense"].dtype == np.float32
    assert inputs["sparse"].dtype == np.int64
    out = orjson.loads(encode_outputs({"score": np.ones((2, 1), dtype=np.float32)}))
    assert out == [{"name": "score", "datatype": "FP32", "shape": [2, 1], "data": [1.0, 1.0]}]


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        (["a"] * 8, "not all numbers"),
        ([1.5] + [1] * 7, "not whole numbers"),
        ([2**63] + [1] * 7, "outside INT64's range"),
    ],
)
def test_values_that_do_not_fit_the_datatype_are_bad_requests(values, needle) -> None:
    doc = orjson.loads(body(1))
    doc["inputs"][1]["data"] = values
    with pytest.raises(BadRequest, match=needle):
        decode_inputs(orjson.dumps(doc))


def test_binary_tensors_validate_and_decode_like_json() -> None:
    from kairos.client.loadgen import BodyFactory
    from kairos.serving.worker.stand_in import StandInDlrm

    bodies = BodyFactory(StandInDlrm().inputs, seed=3)
    raw, json_length = bodies.binary_body(6)
    parsed = validate_request(raw, SIG, 1000, json_length)
    assert (parsed.batch_size, parsed.json_length) == (6, json_length)
    as_json = decode_inputs(bodies.body(6))
    as_binary = decode_inputs(raw, json_length)
    assert set(as_binary) == {"dense", "sparse"}
    for name, arr in as_json.items():
        assert as_binary[name].dtype == arr.dtype and np.array_equal(as_binary[name], arr)


def test_binary_tensors_in_a_writable_buffer_are_views_and_read_only_bytes_are_copied() -> None:
    x = {"name": "x", "datatype": "FP32", "shape": [2, 2], "parameters": {"binary_data_size": 16}}
    doc = {"inputs": [x]}
    # An id of the right length puts the floats at an aligned offset.
    head = next(h for n in range(4) if len(h := orjson.dumps({**doc, "id": "p" * n})) % 4 == 0)
    values = np.arange(4, dtype=np.float32)
    raw = head + values.tobytes()
    assert len(head) % 4 == 0
    buf = bytearray(raw)
    shared = decode_inputs(memoryview(buf), len(head))["x"]
    copied = decode_inputs(raw, len(head))["x"]
    assert np.array_equal(shared.ravel(), values) and np.array_equal(copied.ravel(), values)
    buf[len(head) : len(head) + 4] = np.float32(9.0).tobytes()
    assert shared[0, 0] == 9.0 and copied[0, 0] == 0.0
    assert copied.flags.writeable


def _binary(doc: dict, tail: bytes) -> tuple[bytes, int]:
    head = orjson.dumps(doc)
    return head + tail, len(head)


def test_bad_binary_requests_name_the_problem() -> None:
    dense = {
        "name": "dense",
        "datatype": "FP32",
        "shape": [2, 13],
        "parameters": {"binary_data_size": 104},
    }
    sparse = {
        "name": "sparse",
        "datatype": "INT64",
        "shape": [2, 8],
        "parameters": {"binary_data_size": 128},
    }
    good, n = _binary({"inputs": [dense, sparse]}, bytes(232))
    assert validate_request(good, SIG, 1000, n).batch_size == 2
    short, n_short = _binary({"inputs": [dense, sparse]}, bytes(200))
    with pytest.raises(BadRequest, match="declare 232 bytes of binary data but 200"):
        validate_request(short, SIG, 1000, n_short)
    wrong = dict(dense, parameters={"binary_data_size": 100})
    raw, n = _binary({"inputs": [wrong, sparse]}, bytes(228))
    with pytest.raises(BadRequest, match="needs 104"):
        validate_request(raw, SIG, 1000, n)
    with pytest.raises(BadRequest, match="no Inference-Header-Content-Length"):
        validate_request(orjson.dumps({"inputs": [dense, sparse]}), SIG, 1000)
    both = dict(dense, data=[0.0] * 26)
    raw, n = _binary({"inputs": [both, sparse]}, bytes(232))
    with pytest.raises(BadRequest, match="both 'data' and binary_data_size"):
        validate_request(raw, SIG, 1000, n)
    with pytest.raises(BadRequest, match="not a byte count within"):
        parse_json_length("12x", 100)
    with pytest.raises(BadRequest, match="not a byte count within"):
        parse_json_length("101", 100)
    assert parse_json_length(None, 100) is None
