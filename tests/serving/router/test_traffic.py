"""The router's view of its traffic: rate and mix over a sliding window, and the headroom an
injected watch reports."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from kairos.catalog import Pool
from kairos.control.headroom import PlanWatch
from kairos.errors import ConfigError
from kairos.scenario import Scenario
from kairos.serving.router.config import RouterConfig
from kairos.serving.router.http import HttpRequest
from kairos.serving.router.router import Router
from kairos.serving.router.traffic import TrafficWindow
from tests.serving.fakes import Answer, FakePool, ManualClock


def test_window_measures_rate_and_mix_of_recent_queries_only() -> None:
    w = TrafficWindow(10.0)
    for k in range(100):  # 10 q/s of batch 50 for 10 s
        w.note(k * 0.1, 50)
    for k in range(200):  # then 20 q/s of batch 400 for 10 s
        w.note(10.0 + k * 0.05, 400)
    half = w.snapshot(15.0 + 1e-9)  # a window straddling the shift sees both batches
    assert half.mix is not None and set(half.mix.support.tolist()) == {50, 400}
    t = w.snapshot(20.0)
    assert t.queries == 200
    assert t.rate_qps == pytest.approx(20.0)
    assert t.mix is not None and t.mix.support.tolist() == [400]


def test_window_memory_is_capped_and_the_rate_stays_right() -> None:
    w = TrafficWindow(60.0, max_queries=1000)
    for k in range(50_000):  # 1,000 q/s for 50 s
        w.note(k / 1000.0, 10)
    t = w.snapshot(50.0)
    assert t.queries == 1000
    assert t.rate_qps == pytest.approx(1000.0, rel=0.01)


def test_window_needs_a_positive_length() -> None:
    with pytest.raises(ConfigError, match="--traffic-window-s"):
        TrafficWindow(0.0)


def test_traffic_endpoint_reports_the_observed_mix() -> None:
    clock = ManualClock()
    cfg = RouterConfig(model="dien", pool=Pool.parse("r5n.large=2"), policy="fcfs")
    router = Router(cfg, Scenario.build("dien"), pool=FakePool(), clock=clock, headroom=PlanWatch)
    asyncio.run(router.start_workers())
    for k in range(30):
        clock.now = k * 0.1
        router.dispatcher.admit(b"", 100 if k % 3 else 300, None, Answer(), clock.now)
    clock.now = 3.0
    response = router.handle(HttpRequest("GET", "/v2/traffic", {}, b"", clock.now))
    doc = orjson.loads(response.body)  # type: ignore[union-attr]
    assert doc["queries"] == 30 and doc["rate_qps"] == pytest.approx(10.0)
    assert doc["mix"] == {
        "batch_size": [100, 300],
        "weight": [pytest.approx(2 / 3), pytest.approx(1 / 3)],
    }
    assert doc["pool"] == "r5n.large=2" and doc["utilisation"] > 0
    metrics = router.handle(HttpRequest("GET", "/metrics", {}, b"", clock.now))
    assert router.plan_watch is not None
    router.plan_watch.close()
    assert b"kairos_observed_rate_qps 10.0" in metrics.body  # type: ignore[union-attr]
    assert b"kairos_plan_bound_qps" in metrics.body  # type: ignore[union-attr]
