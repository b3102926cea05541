"""A real PyTorch model behind the router: the metadata advertises exactly its inputs, a
standard client builds a valid request from the metadata alone, and bad values are 400s."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import orjson
import pytest

from kairos.client.launch import RouterProcess, running_router
from tests.models.cache import runner
from tests.serving.helpers import call

MODEL = "wnd"


@pytest.fixture(scope="module")
def router() -> Iterator[RouterProcess]:
    # A built-in type's profile drives the policy; the worker runs the real model (gRPC here,
    # so both carriers see a real model: the end-to-end loop test uses framed TCP).
    args = [
        "--model",
        MODEL,
        "--pool",
        "r5n.large=1",
        "--mode",
        "model",
        "--policy",
        "fcfs",
        "--transport",
        "grpc",
    ]
    with running_router(args, ready_timeout_s=90) as handle:
        yield handle


def test_metadata_advertises_the_models_declared_tensors(router: RouterProcess) -> None:
    doc = json.loads(call(f"{router.url}/v2/models/{MODEL}").text)
    r = runner(MODEL)
    assert doc["inputs"] == list(r.inputs) and doc["outputs"] == list(r.outputs)


def test_tritonclient_builds_a_valid_request_from_the_metadata_alone(
    router: RouterProcess,
) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import triton_to_np_dtype

    client = triton.InferenceServerClient(url=router.url.removeprefix("http://"))
    meta = client.get_model_metadata(MODEL)
    rng = np.random.default_rng(0)
    arrays = {}
    for t in meta["inputs"]:
        shape = [4] + [d if d > 0 else 1 for d in t["shape"][1:]]
        arrays[t["name"]] = (rng.random(shape) * 1000).astype(triton_to_np_dtype(t["datatype"]))
    expected = runner(MODEL)(arrays)["score"]
    for binary in (True, False):
        inputs = []
        for t in meta["inputs"]:
            item = triton.InferInput(t["name"], list(arrays[t["name"]].shape), t["datatype"])
            item.set_data_from_numpy(arrays[t["name"]], binary_data=binary)
            inputs.append(item)
        result = client.infer(MODEL, inputs, headers={})
        scores = result.as_numpy(meta["outputs"][0]["name"])
        assert scores is not None and scores.shape == (4, 1)
        # The worker's answer is the model's: the same weights as the in-process copy.
        np.testing.assert_allclose(scores, expected, rtol=1e-4)
    client.close()


def body(dense: list, batch: int = 1) -> bytes:
    return orjson.dumps(
        {
            "inputs": [
                {"name": "dense", "datatype": "FP32", "shape": [batch, 512], "data": dense},
                {
                    "name": "sparse",
                    "datatype": "INT32",
                    "shape": [batch, 27],
                    "data": [1] * 27 * batch,
                },
            ]
        }
    )


@pytest.mark.parametrize("bad", [None, 1e300, "NaN"])
def test_non_finite_values_are_a_400_from_the_worker(router: RouterProcess, bad: object) -> None:
    dense: list[object] = [0.5] * 512
    dense[7] = bad
    text = body(dense).replace(b'"NaN"', b"NaN")
    reply = call(f"{router.url}/v2/models/{MODEL}/infer", text)
    if bad == "NaN":  # not JSON at all: the router's parser refuses it first
        assert reply.status == 400 and "not valid JSON" in reply.text
        return
    assert reply.status == 400, reply.text
    error = json.loads(reply.text)["error"]
    assert "not finite" in error or "not all numbers" in error, error
    ok = call(f"{router.url}/v2/models/{MODEL}/infer", body([0.5] * 512))
    assert ok.status == 200 and 0 < json.loads(ok.text)["outputs"][0]["data"][0] < 1


def test_a_wrong_shape_is_a_400(router: RouterProcess) -> None:
    doc = orjson.loads(body([0.5] * 512))
    doc["inputs"][1]["shape"] = [1, 26]
    doc["inputs"][1]["data"] = [1] * 26
    reply = call(f"{router.url}/v2/models/{MODEL}/infer", orjson.dumps(doc))
    assert reply.status == 400 and "the model takes [-1, 27]" in reply.text
