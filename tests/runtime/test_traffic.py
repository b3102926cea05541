"""The router's view of its traffic: rate and mix over a sliding window, and headroom."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import orjson
import pytest

from kairos.catalog import Pool
from kairos.errors import ConfigError
from kairos.runtime.http import HttpRequest
from kairos.runtime.router import Router, RouterConfig
from kairos.runtime.traffic import PlanWatch, TrafficWindow, total_variation
from kairos.scenario import Scenario
from kairos.workload import fixed_mix, production_mix
from tests.runtime.fakes import Answer, FakePool, ManualClock


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


def test_total_variation_of_mixes() -> None:
    assert total_variation(fixed_mix(10), fixed_mix(10)) == 0.0
    assert total_variation(fixed_mix(10), fixed_mix(20)) == 1.0


def test_plan_watch_gives_bound_then_simulated_allowable_and_follows_the_mix() -> None:
    scenario = Scenario.build("dien")
    pool = Pool.parse("g4dn.xlarge=1,r5n.large=2")
    watch = PlanWatch(scenario, "kairos", lambda: pool)
    try:
        window = TrafficWindow(60.0)
        rng = np.random.default_rng(0)
        for k, b in enumerate(production_mix().sample(500, rng)):
            window.note(k * 0.01, int(b))
        head = watch.update(window.snapshot(5.0))
        assert head is not None and head.bound_qps > 0 and head.allowable_qps is None
        deadline = time.monotonic() + 60
        while watch.headroom.allowable_qps is None and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.1)
        first = watch.headroom
        assert first is not None and first.allowable_qps is not None
        assert 0 < first.allowable_qps <= first.bound_qps * 1.05
        assert first.utilisation(50.0) == pytest.approx(50.0 / first.allowable_qps)
        # Larger batches: the bound falls and a new search starts.
        for k in range(2000):
            window.note(5.0 + k * 0.01, 900)
        moved = watch.update(window.snapshot(25.0))
        assert moved is not None and moved.bound_qps < first.bound_qps
    finally:
        watch.close()


def test_traffic_endpoint_reports_the_observed_mix() -> None:
    clock = ManualClock()
    cfg = RouterConfig(model="dien", pool=Pool.parse("r5n.large=2"), policy="fcfs")
    router = Router(cfg, Scenario.build("dien"), pool=FakePool(), clock=clock)
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
    router.plan_watch.close()
    assert b"kairos_observed_rate_qps 10.0" in metrics.body  # type: ignore[union-attr]
    assert b"kairos_plan_bound_qps" in metrics.body  # type: ignore[union-attr]
