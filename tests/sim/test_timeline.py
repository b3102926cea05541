"""The time-varying replay: boots, draining, per-second billing with a minimum charge, nothing
lost, and a fixed pool reproducing the plain simulator exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kairos.catalog import Pool, PriceTable
from kairos.errors import ConfigError
from kairos.scenario import Scenario
from kairos.sim.autoscale import CloudSettings, Observation
from kairos.sim.engine import simulate
from kairos.sim.timeline import TimelineSettings, percent_down, simulate_timeline
from kairos.traces import TraceSettings, synthetic_trace
from kairos.workload import QueryStream, fixed_mix, poisson_stream
from tests.conftest import constant_profiles

CLOUD = CloudSettings(default_boot_s=5.0, min_charge_s=60.0)


class Scripted:
    """Returns the pool planned for a tick's time, and keeps the pool otherwise."""

    name = "scripted"

    def __init__(self, plan: dict[float, dict[str, int]]) -> None:
        self.plan = plan
        self.seen: list[Observation] = []

    def decide(self, obs: Observation) -> Pool | None:
        self.seen.append(obs)
        counts = self.plan.get(obs.now_s)
        return None if counts is None else Pool.of(counts)


class Fixed:
    name = "fixed"

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def decide(self, obs: Observation) -> Pool | None:
        return self.pool


@pytest.fixture
def two_types() -> Scenario:
    """'a' ($3.6/h = $0.001/s) and 'b' ($7.2/h), each exactly 10 s for a batch of 100."""
    return Scenario.build(
        "toy",
        qos_ms=15_000.0,
        profiles=constant_profiles({"a": 1000.0, "b": 1000.0}),
        prices=PriceTable({"a": 3.6, "b": 7.2}),
        mix=fixed_mix(100),
    )


def trace(times: list[float], batch: int = 100) -> QueryStream:
    return QueryStream(np.array(times, dtype=float), np.full(len(times), batch))


def test_boot_drain_and_billing_by_hand(two_types):
    # b is asked for at the 10 s tick and serves from 15 s; at 20 s it is told to leave while
    # it serves q1 (15..25 s), so it drains and is billed 10..25 s, i.e. the 60 s minimum.
    scaler = Scripted({0.0: {"a": 1}, 10.0: {"a": 1, "b": 1}, 20.0: {"a": 1}})
    res = simulate_timeline(two_types, scaler, "fcfs", trace([12.0, 12.0, 12.0, 70.0]), cloud=CLOUD)
    r = res.records
    assert r.start_s.tolist() == [12.0, 15.0, 22.0, 70.0]
    assert r.finish_s.tolist() == [22.0, 25.0, 32.0, 80.0]
    assert r.instance.tolist() == [0, 1, 0, 0]
    a, b = res.rentals
    assert (a.requested_s, a.ready_s, a.released_s) == (0.0, 0.0, 80.0)
    assert (b.requested_s, b.ready_s, b.released_s) == (10.0, 15.0, 25.0)
    assert b.billed_s(CLOUD) == 60.0 and a.billed_s(CLOUD) == 80.0
    assert res.cost_dollars == pytest.approx(0.080 + 0.120, abs=1e-12)
    assert res.end_s == 80.0 and res.unanswered == 0
    assert res.qos_share == 0.75  # q2 waited 20 s, over the 15 s target
    assert [(x.time_s, str(x.from_pool), str(x.to_pool)) for x in res.actions] == [
        (10.0, "a=1", "a=1,b=1"),
        (20.0, "a=1,b=1", "a=1"),
    ]
    assert res.scale_actions == 2
    # The tick at 10 s saw b booting; the one at 20 s saw it serving.
    at = {o.now_s: o for o in scaler.seen}
    assert str(at[10.0].pool.serving) == "a=1" and at[10.0].pool.booting.size == 0
    assert str(at[20.0].pool.serving) == "a=1,b=1" and at[20.0].queue_length == 1
    assert at[20.0].in_flight == 2 and at[20.0].short.queries == 3
    assert at[20.0].short.window_s == 20.0 and at[20.0].short.rate_qps == 3 / 20
    assert at[30.0].pool.draining == 0 and str(at[30.0].pool.serving) == "a=1"


def test_an_instance_released_while_booting_never_serves_and_pays_the_minimum(two_types):
    scaler = Scripted({0.0: {"a": 1}, 10.0: {"a": 1, "b": 1}, 20.0: {"a": 1}})
    slow = CloudSettings(default_boot_s=30.0, boot_s={"a": 1.0}, min_charge_s=60.0)
    res = simulate_timeline(two_types, scaler, "fcfs", trace([12.0, 12.0]), cloud=slow)
    b = res.rentals[1]
    assert (b.requested_s, b.ready_s, b.released_s) == (10.0, None, 20.0)
    assert b.cost_dollars(slow) == pytest.approx(0.002 * 60)
    assert 1 not in res.records.instance.tolist()
    assert res.records.finish_s.tolist() == [22.0, 32.0]


def test_the_initial_pool_is_booted_at_the_start_and_sees_the_first_window(two_types):
    scaler = Scripted({0.0: {"a": 1}})
    res = simulate_timeline(two_types, scaler, "fcfs", trace([0.0, 5.0]), cloud=CLOUD)
    assert res.records.start_s.tolist() == [0.0, 10.0]
    first = scaler.seen[0]
    assert first.now_s == 0.0 and first.short.queries == 2 and first.short.window_s == 30.0
    assert first.short.mix is not None and first.short.mix.support.tolist() == [100]


def test_a_window_carries_its_busiest_whole_second(two_types):
    # Seconds 0, 1 and 3 of the first window: 2, 3 and 1 arrivals; the busiest holds 3.
    times = [0.2, 0.9, 1.0, 1.5, 1.99, 3.5, 40.0]
    scaler = Scripted({0.0: {"a": 1}})
    simulate_timeline(two_types, scaler, "fcfs", trace(times), cloud=CLOUD)
    assert scaler.seen[0].short.peak_qps == 3.0 and scaler.seen[0].long.peak_qps == 3.0
    # At t=40 the short window [10, 40] holds no arrival (the one at 40 s comes after).
    at_40 = next(o for o in scaler.seen if o.now_s == 40.0)
    assert at_40.short.queries == 0 and at_40.short.peak_qps == 0.0


def test_an_empty_pool_does_not_hang_and_its_queries_are_misses(two_types):
    scaler = Scripted({0.0: {"a": 1}, 10.0: {}})
    settings = TimelineSettings(drain_limit_s=30.0)
    res = simulate_timeline(
        two_types, scaler, "fcfs", trace([1.0, 15.0, 16.0]), cloud=CLOUD, settings=settings
    )
    assert res.unanswered == 2 and res.queries == 3
    assert np.isnan(res.records.finish_s[1:]).all() and res.records.instance[1:].tolist() == [
        -1,
        -1,
    ]
    assert res.qos_share == pytest.approx(1 / 3)
    assert res.end_s == 46.0  # the last arrival plus the drain limit
    (a,) = res.rentals
    assert a.released_s == 11.0  # asked to leave at 10 s while serving q0 (1..11 s)
    assert res.minutes.qos_share.tolist() == [pytest.approx(1 / 3)]
    assert res.minutes.p99_ms.tolist() == [math.inf]


def test_a_pool_that_comes_back_serves_what_waited(two_types):
    scaler = Scripted({0.0: {"a": 1}, 10.0: {}, 30.0: {"b": 1}})
    res = simulate_timeline(two_types, scaler, "fcfs", trace([1.0, 15.0]), cloud=CLOUD)
    assert res.unanswered == 0
    assert res.records.start_s.tolist() == [1.0, 35.0]  # b asked at 30 s, booted at 35 s


@pytest.mark.parametrize("policy", ["fcfs", "kairos"])
def test_a_fixed_pool_reproduces_the_plain_simulator_exactly(builtin_profiles, policy):
    scenario = Scenario.build("rm2", profiles=builtin_profiles)
    pool = Pool.parse("g4dn.xlarge=1,r5n.large=4")
    stream = poisson_stream(20, 3000, scenario.mix, np.random.default_rng(3))
    plain = simulate(scenario, pool, policy, stream, seed=7).records
    settings = TimelineSettings(chunk_queries=256)  # many chunks: the draws stay in order
    res = simulate_timeline(scenario, Fixed(pool), policy, stream, seed=7, settings=settings)
    r = res.records
    assert np.array_equal(r.start_s, plain.start_s)
    assert np.array_equal(r.finish_s, plain.finish_s)
    assert np.array_equal(r.instance, plain.instance)
    assert r.instance_type == plain.instance_type
    assert res.scale_actions == 0
    hours = (res.end_s - res.start_s) / 3600
    assert res.cost_dollars == pytest.approx(pool.cost_per_hr(scenario.prices) * hours)


class Follow:
    """Sized for the larger window rate, in units of one g4dn.xlarge and four r5n.large."""

    name = "follow"

    def decide(self, obs: Observation) -> Pool | None:
        k = max(1, math.ceil(max(obs.short.rate_qps, obs.long.rate_qps) * 1.3 / 18.0))
        return Pool.of({"g4dn.xlarge": k, "r5n.large": 4 * k})


def test_autoscaled_replays_are_deterministic_and_lose_nothing(builtin_profiles):
    scenario = Scenario.build("rm2", profiles=builtin_profiles)
    shape = TraceSettings(duration_s=900, peak_qps=60, trough_qps=10, period_s=900)
    stream = synthetic_trace("diurnal", shape, scenario.mix, seed=5)
    cloud = CloudSettings(default_boot_s=30.0)
    one = simulate_timeline(scenario, Follow(), "fcfs", stream, cloud=cloud, seed=1)
    two = simulate_timeline(scenario, Follow(), "fcfs", stream, cloud=cloud, seed=1)
    assert one.scale_actions > 2
    assert one.cost_dollars == two.cost_dollars and one.actions == two.actions
    assert np.array_equal(one.records.finish_s, two.records.finish_s, equal_nan=True)
    answered = np.isfinite(one.records.finish_s)
    assert answered.sum() + one.unanswered == one.queries == len(stream)
    assert (one.records.start_s[answered] >= stream.arrival_s[answered]).all()
    # Each query ran on an instance that was serving then, and billing covers every rental.
    for r in one.rentals:
        on = one.records.instance == r.instance
        if on.any():
            assert r.ready_s is not None
            assert one.records.start_s[on].min() >= r.ready_s
            assert one.records.finish_s[on].max() <= r.released_s
    total = sum(
        r.price_per_hr * max(r.released_s - r.requested_s, 60.0) / 3600 for r in one.rentals
    )
    assert one.cost_dollars == pytest.approx(total)
    m = one.minutes
    assert len(m) == 15 and round(m.rate_qps.sum() * 60) == len(stream)
    assert m.cost_per_hr.max() > m.cost_per_hr.min() > 0
    assert set(m.pool) == {"g4dn.xlarge", "r5n.large"}


def test_bad_autoscalers_and_settings_are_refused(two_types):
    with pytest.raises(ConfigError, match="no initial pool"):
        simulate_timeline(two_types, Scripted({}), "fcfs", trace([1.0]))
    with pytest.raises(ConfigError, match="tick_s"):
        TimelineSettings(tick_s=0)
    with pytest.raises(ConfigError, match="power of two"):
        TimelineSettings(chunk_queries=1000)


def test_percentages_are_truncated_never_rounded_up():
    assert percent_down(0.99995) == "99.9%"
    assert percent_down(0.99995, 2) == "99.99%"
    assert percent_down(1.0) == "100.0%" and percent_down(0.0) == "0.0%"
    assert percent_down(0.999) == "99.9%"  # not 99.8% from a float just below
