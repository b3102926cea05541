"""Model-mode request handling: inputs are checked against the model's declaration and no
non-finite value ever reaches a model (in-process, no sockets)."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest

from kairos.client.loadgen import BodyFactory
from kairos.protocol.frames import frame, unframe
from kairos.protocol.tensors import BadRequest, TensorSpec
from kairos.serving.worker.handlers import ModelHandler, check_inputs
from kairos.serving.worker.launch import WorkerSpec
from kairos.serving.worker.service import WorkerService
from tests.models.cache import runner

SPECS = (TensorSpec("dense", "FP32", (-1, 3)), TensorSpec("ids", "INT32", (-1, 2)))


class Spy:
    """A model that records every call it gets."""

    inputs = [s.as_dict() for s in SPECS]

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        return {"score": arrays["dense"].sum(axis=1, keepdims=True)}


def json_body(dense: list, ids: list, batch: int = 2) -> bytes:
    return orjson.dumps(
        {
            "inputs": [
                {"name": "dense", "datatype": "FP32", "shape": [batch, 3], "data": dense},
                {"name": "ids", "datatype": "INT32", "shape": [batch, 2], "data": ids},
            ]
        }
    )


@pytest.mark.parametrize(
    ("dense", "needle"),
    [
        ([1, 2, None, 4, 5, 6], "not all numbers"),
        ([1, 2, 1e300, 4, 5, 6], "not finite in FP32"),
        ([1, 2, 3, 4, 5, -1e39], "not finite in FP32"),
    ],
)
def test_null_and_out_of_range_json_values_never_reach_the_model(dense: list, needle: str) -> None:
    spy = Spy()
    handler = ModelHandler(spy)
    with pytest.raises(BadRequest, match=needle):
        handler.serve(json_body(dense, [1, 2, 3, 4]))
    assert spy.calls == 0
    assert orjson.loads(handler.serve(json_body([1, 2, 3, 4, 5, 6], [1, 2, 3, 4])))[0]["data"] == [
        6.0,
        15.0,
    ]
    assert spy.calls == 1


def test_nan_in_binary_tensors_never_reaches_the_model() -> None:
    spy = Spy()
    body, json_length = BodyFactory(SPECS, 0).binary_body(4)
    raw = bytearray(body)
    raw[json_length : json_length + 4] = np.float32(np.nan).tobytes()
    with pytest.raises(BadRequest, match="finite"):
        ModelHandler(spy).serve(bytes(raw), json_length)
    assert spy.calls == 0


def test_inputs_must_match_the_declaration() -> None:
    ok = {"dense": np.zeros((2, 3), np.float32), "ids": np.zeros((2, 2), np.int32)}
    assert check_inputs(ok, SPECS) == 2
    cases: list[tuple[dict[str, np.ndarray], str]] = [
        ({"dense": ok["dense"]}, "the model takes"),
        ({**ok, "ids": np.zeros((2, 2), np.int64)}, "is int64, the model takes INT32"),
        ({**ok, "dense": np.zeros((2, 4), np.float32)}, r"shape \[2, 4\], the model takes"),
        ({**ok, "ids": np.zeros((2, 2, 1), np.int32)}, "shape"),
        ({**ok, "ids": np.zeros((3, 2), np.int32)}, "disagree on the batch size"),
    ]
    for arrays, needle in cases:
        with pytest.raises(BadRequest, match=needle):
            check_inputs(arrays, SPECS)
    # Without a declaration only the batch and the values are checked.
    assert check_inputs({"x": np.ones((5, 9), np.float64)}, None) == 5


def test_worker_answers_400_for_a_wrong_shape_before_the_built_in_model_runs() -> None:
    r = runner("ncf")
    cfg = WorkerSpec("local.full", "ncf", mode="model")
    service = WorkerService(cfg, ModelHandler(r))
    good = BodyFactory(tuple(TensorSpec.parse(s) for s in r.inputs), 0).body(3)
    header, payload = unframe(asyncio.run(service.handle(frame({"qid": 1, "batch": 3}, good))))
    assert header["code"] == 200
    scores = orjson.loads(payload)[0]
    assert scores["name"] == "score" and scores["shape"] == [3, 1]
    wrong = orjson.loads(good)
    wrong["inputs"][0]["shape"] = [1, 3]
    header, _ = unframe(
        asyncio.run(service.handle(frame({"qid": 2, "batch": 1}, orjson.dumps(wrong))))
    )
    assert header["code"] == 400 and "shape [1, 3], the model takes [-1, 1]" in header["error"]
    assert service.description()["inputs"] == list(r.inputs)


def test_timed_reports_preparation_and_inference_apart() -> None:
    r = runner("dien")
    specs = tuple(TensorSpec.parse(s) for s in r.inputs)
    body, json_length = BodyFactory(specs, 0).binary_body(50)
    out, times = ModelHandler(r).timed(body, json_length)
    assert orjson.loads(out)[0]["shape"] == [50, 1]
    assert 0 < times.prepare_ms < times.total_ms and 0 < times.infer_ms < times.total_ms
    assert times.prepare_ms + times.infer_ms <= times.total_ms
