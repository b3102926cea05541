"""The built-in model, the worker handlers and the live capacity search (no processes)."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import orjson

from kairos.client.loadgen import BodyFactory, search_rate
from kairos.protocol.frames import frame, unframe
from kairos.protocol.tensors import TensorSpec
from kairos.scenario import Scenario
from kairos.serving.worker.launch import WorkerSpec
from kairos.serving.worker.service import ReplayHandler, WorkerService, make_handler
from kairos.serving.worker.stand_in import StandInDlrm


def test_the_stand_in_dlrm_scores_are_probabilities_and_deterministic() -> None:
    rng = np.random.default_rng(1)
    x: dict[str, np.ndarray] = {
        "dense": rng.random((5, 13)).astype(np.float32),
        "sparse": rng.integers(0, 10**9, (5, 8)),
    }
    a, b = StandInDlrm()(x)["score"], StandInDlrm()(x)["score"]
    assert a.shape == (5, 1)
    assert np.all((a > 0) & (a < 1))
    np.testing.assert_array_equal(a, b)


def test_replay_handler_sleeps_the_scaled_profile_time() -> None:
    profile = Scenario.build("dien").profiles.get("r5n.large")
    handler = ReplayHandler(profile, time_scale=0.0, seed=0)
    out = orjson.loads(asyncio.run(handler.run(3, b"")))
    assert out[0]["shape"] == [3, 1]


def test_worker_service_answers_model_mode_and_reports_bad_input() -> None:
    # The numpy stand-in through the handler contract (the PyTorch models: tests/models).
    cfg = WorkerSpec(
        "r5n.large", "dien", mode="model", handler="kairos.serving.worker.stand_in:StandInDlrm"
    )
    service = WorkerService(cfg, make_handler(cfg, None))
    good = BodyFactory(StandInDlrm().inputs, 0).body(4)
    header, payload = unframe(asyncio.run(service.handle(frame({"qid": 1, "batch": 4}, good))))
    assert header["code"] == 200 and header["qid"] == 1
    assert orjson.loads(payload)[0]["shape"] == [4, 1]
    bad = orjson.loads(good)
    bad["inputs"][1]["data"] = ["x"] * 32
    header, _ = unframe(
        asyncio.run(service.handle(frame({"qid": 2, "batch": 4}, orjson.dumps(bad))))
    )
    assert header["code"] == 400 and "INT64" in header["error"]


def test_body_factory_follows_the_signature() -> None:
    spec = (TensorSpec("a", "FP32", (-1, 3)), TensorSpec("b", "INT32", (-1, -1)))
    doc = orjson.loads(BodyFactory(spec, 0).body(2))
    assert [t["shape"] for t in doc["inputs"]] == [[2, 3], [2, 1]]


def test_search_rate_brackets_then_bisects_to_precision() -> None:
    true_capacity = 137.0
    calls: list[float] = []

    async def passes(rate: float) -> bool:
        calls.append(rate)
        return rate <= true_capacity

    for guess in (10.0, 1000.0, 137.0):
        lo, hi = asyncio.run(search_rate(passes, guess, precision=0.02))
        assert lo <= true_capacity < hi
        assert hi / lo - 1 <= 0.02


def test_search_rate_reports_zero_when_nothing_passes() -> None:
    async def never(rate: float) -> bool:
        return False

    lo, hi = asyncio.run(search_rate(never, 100.0, max_steps=3))
    assert lo == 0.0 and math.isfinite(hi)
