"""KServe v2 endpoints, validation, auth and /metrics of a live router (real processes)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kairos.client.launch import RouterProcess, running_router
from tests.serving.helpers import BODIES, call

TOKEN = "s3cret"
POOL = "g4dn.xlarge=1,r5n.large=1"


@pytest.fixture(scope="module")
def router() -> Iterator[RouterProcess]:
    args = [
        "--model",
        "dien",
        "--pool",
        POOL,
        "--policy",
        "fcfs",
        "--time-scale",
        "0.05",
        "--api-token",
        TOKEN,
        "--max-body-bytes",
        "200000",
    ]
    with running_router(args, ready_timeout_s=60) as handle:
        yield handle


def infer(
    router: RouterProcess,
    body: bytes,
    token: str | None = TOKEN,
    model: str = "dien",
    json_length: int | None = None,
) -> tuple[int, dict]:
    reply = call(f"{router.url}/v2/models/{model}/infer", body, token, json_length=json_length)
    return reply.status, json.loads(reply.text)


def test_health_is_open_and_ready(router: RouterProcess) -> None:
    assert call(f"{router.url}/v2/health/live").status == 200
    assert call(f"{router.url}/v2/health/ready").status == 200
    assert call(f"{router.url}/v2/models/dien/ready", token=TOKEN).status == 200


def test_model_metadata_lists_tensors_and_pool(router: RouterProcess) -> None:
    reply = call(f"{router.url}/v2/models/dien", token=TOKEN)
    doc = json.loads(reply.text)
    assert reply.status == 200
    assert [t["name"] for t in doc["inputs"]] == ["dense", "sparse"]
    assert doc["inputs"][0]["shape"] == [-1, 13]
    assert doc["parameters"]["pool"] == POOL
    assert doc["parameters"]["qos_ms"] == 35.0
    assert [w["up"] for w in doc["parameters"]["workers"]] == [True, True]


def test_infer_answers_outputs_and_where_it_ran(router: RouterProcess) -> None:
    body = orjson.loads(BODIES.body(5)) | {"id": "req-7"}
    status, doc = infer(router, orjson.dumps(body))
    assert status == 200, doc
    assert doc["model_name"] == "dien" and doc["id"] == "req-7"
    assert doc["outputs"][0]["shape"] == [5, 1] and len(doc["outputs"][0]["data"]) == 5
    params = doc["parameters"]
    assert params["instance"] in (0, 1)
    assert params["instance_type"] == ("g4dn.xlarge", "r5n.large")[params["instance"]]
    assert params["queue_ms"] >= 0 and params["service_ms"] > 0
    # The router's own wall overhead: part of the query's wall latency (time scale 0.05).
    assert 0 <= params["overhead_ms"] <= params["latency_ms"] * 0.05 + 1e-6
    assert isinstance(params["qos_met"], bool)


def test_binary_tensor_requests_are_served_and_checked(router: RouterProcess) -> None:
    raw, json_length = BODIES.binary_body(6)
    status, doc = infer(router, raw, json_length=json_length)
    assert status == 200, doc
    assert doc["outputs"][0]["shape"] == [6, 1]
    status, doc = infer(router, raw[:-8], json_length=json_length)
    assert status == 400 and "bytes of binary data but" in doc["error"]
    status, doc = infer(router, raw, json_length=len(raw) + 1)
    assert status == 400 and "Inference-Header-Content-Length" in doc["error"]


def test_paths_and_methods_outside_the_api_are_refused(router: RouterProcess) -> None:
    assert call(f"{router.url}/v2/nothing", token=TOKEN).status == 404
    assert call(f"{router.url}/v2/models/dien/versions/1", token=TOKEN).status == 200
    assert call(f"{router.url}/v2/models/dien/versions/7", token=TOKEN).status == 404
    reply = call(f"{router.url}/v2/models/dien/infer", token=TOKEN)  # GET, not POST
    assert reply.status == 405 and reply.headers["allow"] == "POST"


def test_unknown_model_is_404(router: RouterProcess) -> None:
    status, doc = infer(router, BODIES.body(1), model="nope")
    assert status == 404 and "'nope'" in doc["error"]


def test_bad_requests_get_400_with_a_reason(router: RouterProcess) -> None:
    wrong_shape = orjson.loads(BODIES.body(2))
    wrong_shape["inputs"][0]["shape"] = [2, 12]
    wrong_shape["inputs"][0]["data"] = [0.0] * 24
    cases = {
        b"{oops": "not valid JSON",
        orjson.dumps(wrong_shape): "reshape 'dense'",
        BODIES.body(1001): "outside the profiled range 1..1000",
        b" " * 200_001: "exceeds the 200000-byte limit",
    }
    for body, needle in cases.items():
        status, doc = infer(router, body)
        assert status == 400, (needle, doc)
        assert needle in doc["error"]


def test_auth_is_required_except_for_health(router: RouterProcess) -> None:
    assert infer(router, BODIES.body(1), token=None)[0] == 401
    assert infer(router, BODIES.body(1), token="wrong")[0] == 401
    assert call(f"{router.url}/metrics").status == 401


def test_metrics_parse_as_prometheus_text(router: RouterProcess) -> None:
    assert infer(router, BODIES.body(3))[0] == 200
    reply = call(f"{router.url}/metrics", token=TOKEN)
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(reply.text)}
    for name in (
        "kairos_query_latency_seconds",
        "kairos_queue_length",
        "kairos_in_flight_queries",
        "kairos_qos_violations",
        "kairos_queries_rejected",
        "kairos_pool_cost_per_hour",
        "kairos_workers_up",
    ):
        assert name in families, name
    counts = {
        s.labels["instance_type"]: s.value
        for s in families["kairos_query_latency_seconds"].samples
        if s.name.endswith("_count")
    }
    assert set(counts) == {"g4dn.xlarge", "r5n.large"} and sum(counts.values()) >= 1
    cost = families["kairos_pool_cost_per_hour"].samples[0].value
    assert cost == pytest.approx(0.526 + 0.149)
    assert families["kairos_workers_up"].samples[0].value == 2


def handler_router_args(handler: str, *extra: str) -> list[str]:
    """A router for dien on one r5n.large whose worker runs ``handler`` of tests.serving.helpers."""
    pool = ["--model", "dien", "--pool", "r5n.large=1"]
    return [*pool, "--handler", f"tests.serving.helpers:{handler}", *extra]


def test_user_handler_runs_and_its_signature_is_enforced() -> None:
    with running_router(handler_router_args("double_handler"), ready_timeout_s=60) as handle:
        good = {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}]
        }
        status, doc = infer(handle, orjson.dumps(good), token=None)
        assert status == 200, doc
        assert doc["outputs"] == [
            {"name": "doubled", "datatype": "FP32", "shape": [2, 2], "data": [2, 4, 6, 8]}
        ]
        status, doc = infer(handle, BODIES.body(2), token=None)
        assert status == 400 and "the model takes ['x']" in doc["error"]


def test_the_triton_http_client_works_unchanged(router: RouterProcess) -> None:
    """A standard KServe v2 client (NVIDIA's tritonclient), JSON and binary tensors."""
    import numpy as np
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=router.url.removeprefix("http://"))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.is_server_live() and client.is_model_ready("dien", headers=auth)
    meta = client.get_model_metadata("dien", headers=auth)
    assert [(t["name"], t["datatype"]) for t in meta["inputs"]] == [
        ("dense", "FP32"),
        ("sparse", "INT64"),
    ]
    rng = np.random.default_rng(0)
    for binary in (True, False):
        dense = triton.InferInput("dense", [3, 13], "FP32")
        dense.set_data_from_numpy(rng.random((3, 13), dtype=np.float32), binary_data=binary)
        sparse = triton.InferInput("sparse", [3, 8], "INT64")
        sparse.set_data_from_numpy(rng.integers(0, 100, (3, 8)), binary_data=binary)
        # A fresh dict: tritonclient adds its Inference-Header-Content-Length to the one given.
        result = client.infer("dien", [dense, sparse], headers=dict(auth))
        scores = result.as_numpy("score")
        assert scores is not None and scores.shape == (3, 1)
        assert result.get_response()["parameters"]["instance_type"] in (
            "g4dn.xlarge",
            "r5n.large",
        )
    client.close()


def test_pipeline_sends_queries_behind_a_running_one_and_answers_each_right() -> None:
    """--pipeline on a model worker over framed TCP: queries queued behind a slow one are
    sent to wait at the worker, and each answer is its own query's."""
    from concurrent.futures import ThreadPoolExecutor

    args = handler_router_args("slow_double_handler", "--pipeline")

    def body(k: int) -> bytes:
        x = [float(k), float(k + 1)]
        return orjson.dumps(
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": x}]}
        )

    with running_router(args, ready_timeout_s=60) as handle:
        with ThreadPoolExecutor(6) as threads:
            got = list(threads.map(lambda k: infer(handle, body(k), token=None), range(6)))
        families = {
            f.name: f for f in text_string_to_metric_families(call(f"{handle.url}/metrics").text)
        }
    assert [status for status, _ in got] == [200] * 6
    assert [doc["outputs"][0]["data"] for _, doc in got] == [[2 * k, 2 * k + 2] for k in range(6)]
    assert families["kairos_queries_sent_behind"].samples[0].value >= 1
