"""The shipped Grafana dashboard only queries metrics the router exposes."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from kairos.catalog import Pool
from kairos.control.headroom import PlanWatch
from kairos.scenario import Scenario
from kairos.serving.router.config import RouterConfig
from kairos.serving.router.http import HttpRequest
from kairos.serving.router.router import Router
from tests.serving.fakes import Answer, FakePool, ManualClock

DASHBOARD = Path(__file__).parents[3] / "deploy" / "grafana" / "kairos-router.json"


def test_every_metric_the_dashboard_queries_is_exposed() -> None:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    wanted = {m for e in exprs for m in re.findall(r"\bkairos_[a-z_]+", e)}
    assert {
        "kairos_queue_length",
        "kairos_qos_violations_total",
        "kairos_plan_utilisation",
        "kairos_pool_cost_per_hour",
        "kairos_query_latency_seconds_bucket",
        "kairos_control_target_rate_qps",
        "kairos_control_target_instances",
        "kairos_control_cost_per_hour",
    } <= wanted
    clock = ManualClock()
    pool = FakePool()
    cfg = RouterConfig(model="dien", pool=Pool.parse("r5n.large=2"), policy="fcfs")
    router = Router(cfg, Scenario.build("dien"), pool=pool, clock=clock, headroom=PlanWatch)
    asyncio.run(router.start_workers())
    router.dispatcher.admit(b"", 10, None, Answer(), 0.0)
    clock.now = 0.01
    pool.finish(next(iter(pool.in_flight)), 5.0)
    text = router.handle(HttpRequest("GET", "/metrics", {}, b"", 0.0)).body.decode()  # type: ignore[union-attr]
    assert router.plan_watch is not None
    router.plan_watch.close()
    exposed = set(re.findall(r"^(kairos_[a-z_]+)", text, re.M))
    assert wanted <= exposed, sorted(wanted - exposed)
