"""An instance actor runs the ordinary worker in every mode: a built-in PyTorch model and a
user's handler answer real tensors through the Ray backend (replay: the other tests)."""

from __future__ import annotations

import math

import orjson

from kairos.client.admin import http_request
from kairos.client.launch import running_router
from tests.serving.ray.helpers import RayTestCluster

DOUBLE = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}]}


def zeros_request(metadata: dict, batch: int) -> bytes:
    """A valid request built from the model's metadata alone (zeros fit every input)."""
    inputs = []
    for t in metadata["inputs"]:
        shape = [batch] + [d if d > 0 else 1 for d in t["shape"][1:]]
        inputs.append({**t, "shape": shape, "data": [0] * math.prod(shape)})
    return orjson.dumps({"inputs": inputs})


def serve(ray_cluster: RayTestCluster, model: str, *worker_args: str) -> list[str]:
    return [
        "--model",
        model,
        "--pool",
        "r5n.large=1",
        "--backend",
        "ray",
        "--address",
        ray_cluster.address,
        *worker_args,
    ]


def test_a_pytorch_model_runs_in_an_actor(ray_cluster: RayTestCluster) -> None:
    with running_router(serve(ray_cluster, "wnd", "--mode", "model"), 120) as router:
        status, text = http_request(router.url + "/v2/models/wnd")
        assert status == 200, text
        body = zeros_request(orjson.loads(text), 3)
        status, text = http_request(router.url + "/v2/models/wnd/infer", body)
        assert status == 200, text
        doc = orjson.loads(text)
        assert doc["parameters"]["instance_type"] == "r5n.large"
        assert doc["outputs"][0]["shape"] == [3, 1]


def test_a_user_handler_runs_in_an_actor(ray_cluster: RayTestCluster) -> None:
    args = serve(ray_cluster, "dien", "--handler", "tests.serving.helpers:double_handler")
    with running_router(args, 120) as router:
        status, text = http_request(router.url + "/v2/models/dien/infer", orjson.dumps(DOUBLE))
        assert status == 200, text
        assert orjson.loads(text)["outputs"][0]["data"] == [2, 4, 6, 8]
