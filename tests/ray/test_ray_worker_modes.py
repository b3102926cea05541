"""An instance actor runs the ordinary worker in every mode: the built-in model and a user's
handler answer real tensors through the Ray backend (replay is covered by the other tests)."""

from __future__ import annotations

import orjson
import pytest

from kairos.runtime.launch import http_request, running_router
from tests.ray.helpers import RayTestCluster
from tests.runtime.helpers import BODIES

DOUBLE = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}]}


@pytest.mark.parametrize(
    ("worker_args", "body", "check"),
    [
        (["--mode", "model"], BODIES.body(3),
         lambda out: out[0]["name"] == "score" and out[0]["shape"] == [3, 1]),
        (["--handler", "tests.runtime.helpers:double_handler"], orjson.dumps(DOUBLE),
         lambda out: out[0]["data"] == [2, 4, 6, 8]),
    ],
    ids=["model", "handler"],
)  # fmt: skip
def test_model_and_handler_workers_run_in_actors(
    ray_cluster: RayTestCluster, worker_args: list[str], body: bytes, check: object
) -> None:
    args = ["--model", "dien", "--pool", "r5n.large=1", "--backend", "ray",
            "--address", ray_cluster.address, *worker_args]  # fmt: skip
    with running_router(args, ready_timeout_s=120) as router:
        status, text = http_request(router.url + "/v2/models/dien/infer", body)
        assert status == 200, text
        doc = orjson.loads(text)
        assert doc["parameters"]["instance_type"] == "r5n.large"
        assert check(doc["outputs"]), doc["outputs"]  # type: ignore[operator]
