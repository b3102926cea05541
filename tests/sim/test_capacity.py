from __future__ import annotations

import math

import pytest
from scipy.optimize import brentq

from kairos.catalog import Pool
from kairos.scenario import QOS_QUANTILE
from kairos.sim.capacity import allowable_throughput


def md1_wait_cdf(t: float, rho: float) -> float:
    """Erlang's M/D/1 FCFS waiting-time CDF, service time 1, at t >= 0 (exact)."""
    total = 0.0
    for k in range(int(math.floor(t)) + 1):
        x = rho * (k - t)
        total += x**k / math.factorial(k) * math.exp(-x)
    return (1 - rho) * total


def test_single_instance_fixed_service_matches_md1(toy_scenario):
    # Service 10 ms, QoS 40 ms: a query meets QoS iff it waits <= 30 ms = 3 service times.
    rho = brentq(lambda r: md1_wait_cdf(3.0, r) - QOS_QUANTILE, 0.05, 0.99)
    expected_qps = rho / 0.010
    res = allowable_throughput(
        toy_scenario, Pool.parse("fast=1"), "fcfs", queries=20000, precision=0.01
    )
    assert res.allowable_qps == pytest.approx(expected_qps, rel=0.08)
    assert res.metrics is not None and res.metrics.qos_met_fraction >= QOS_QUANTILE
    assert any(not t.passed for t in res.trials)


def test_pool_that_cannot_meet_qos_reports_zero_with_reason(toy_scenario):
    from dataclasses import replace

    tight = replace(toy_scenario, qos_ms=5.0)
    res = allowable_throughput(tight, Pool.parse("fast=2"), "fcfs", queries=200)
    assert res.allowable_qps == 0.0
    assert "5 ms" in res.reason and "fast=2" in res.reason


def test_more_instances_never_lower_capacity(toy_scenario):
    one = allowable_throughput(toy_scenario, Pool.parse("fast=1"), queries=2000).allowable_qps
    two = allowable_throughput(toy_scenario, Pool.parse("fast=2"), queries=2000).allowable_qps
    assert two > 1.5 * one


def test_rate_search_brackets_then_bisects():
    from kairos.sim.search import drive, rate_search

    tried = []

    def passes(rate):
        tried.append(rate)
        return rate <= 123.0

    lo, hi = drive(rate_search(10.0, 0.01), passes)
    assert lo <= 123.0 < hi and hi / lo - 1 <= 0.01
    assert tried[:5] == [10.0, 20.0, 40.0, 80.0, 160.0]
    assert drive(rate_search(10.0, 0.01, max_steps=3), lambda r: False) == (0.0, 1.25)
    assert drive(rate_search(10.0, 0.01, max_steps=2), lambda r: True)[1] == float("inf")
