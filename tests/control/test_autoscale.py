"""The kairos autoscaler and its ladder: exact decisions on hand-made observations.

The controller's tests plan on a stand-in ladder whose pools and capacities are fixed here, so
every decision can be stated exactly; the ladder's own tests plan a tiny scenario for real.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from kairos.allocator.target import cheapest_for_rate
from kairos.catalog import Pool, PriceTable
from kairos.control.autoscale import AUTOSCALERS
from kairos.control.autoscale.controller import KairosAutoscaler, KairosSettings
from kairos.control.autoscale.ladder import (
    Choice,
    Ladder,
    Ladders,
    LadderSettings,
    choose,
    coarse,
    mix_drift,
    pool_distance,
)
from kairos.errors import ConfigError
from kairos.scenario import Scenario
from kairos.sim.autoscale import CloudSettings, Observation, PoolState, TrafficWindow
from kairos.workload import BatchMix, fixed_mix
from tests.conftest import constant_profiles

PRICES = PriceTable({"big": 1.0, "small": 0.3})
# (pool, rate it holds): the stand-in ladder's whole catalog of verified pools.
TABLE = {
    "small=1": 10.0,
    "small=2": 20.0,
    "big=1": 40.0,
    "big=1,small=1": 50.0,
    "big=2": 80.0,
    "big=3": 120.0,
}
NO_NOISE = KairosSettings(
    headroom=1.0, noise_sigmas=0.0, trend_weight=0.0, min_rate_qps=1.0, downscale_delay_s=300.0
)


def scenario() -> Scenario:
    return Scenario.build(
        "toy",
        qos_ms=40.0,
        profiles=constant_profiles({"big": 10.0, "small": 20.0}),
        prices=PRICES,
        mix=fixed_mix(10),
    )


class TableLadder(Ladder):
    """A ladder whose rungs are read from ``TABLE``: the cheapest pool holding the rung."""

    def _plan(self, rate_qps: float) -> Choice | None:
        fits = [
            Choice(Pool.parse(p), Pool.parse(p).cost_per_hr(PRICES), held)
            for p, held in TABLE.items()
            if held >= rate_qps
        ]
        for c in fits:
            self._remember(c)
        return min(fits, key=lambda c: c.cost_per_hr, default=None)

    def holds(self, pool: Pool, rate_qps: float) -> bool:
        """A pool holds what the most capable table pool inside it holds (a pool with more
        instances holds at least as much)."""
        inside = [
            h for p, h in TABLE.items() if all(pool.count(t) >= n for t, n in Pool.parse(p).counts)
        ]
        return pool.size > 0 and max(inside, default=0.0) >= rate_qps


class TableLadders(Ladders):
    def for_mix(self, mix: BatchMix | None) -> Ladder:
        if not self._ladders:
            self._ladders.append(TableLadder(self.scenario, self.policy, self.settings))
        return self._ladders[0]


def autoscaler(settings: KairosSettings = NO_NOISE, budget: float | None = None):
    sc = scenario()
    ladders = TableLadders(sc, "fcfs", LadderSettings(step=1.25))
    return KairosAutoscaler(
        sc, "fcfs", CloudSettings(default_boot_s=60.0), budget, settings, ladders
    )


def obs(
    now_s: float,
    rate_qps: float,
    rented: str = "",
    queue: int = 0,
    booting: str = "",
    peak_qps: float | None = None,
) -> Observation:
    pool = Pool.parse(rented) if rented else Pool(())
    boot = Pool.parse(booting) if booting else Pool(())
    short = TrafficWindow(30.0, round(rate_qps * 30), rate_qps, None, peak_qps)
    long = TrafficWindow(300.0, round(rate_qps * 300), rate_qps, None)
    return Observation(now_s, PoolState(pool, boot, 0), queue, 0, short, long)


def test_registry_lists_every_autoscaler() -> None:
    assert set(AUTOSCALERS.names()) == {
        "kairos",
        "static-peak",
        "static-mean",
        "static-best",
        "ray-serve",
        "skyserve",
        "oracle",
    }
    with pytest.raises(ConfigError, match="autoscaler 'nope' is not known"):
        AUTOSCALERS.get("nope")


def test_scales_up_at_once_and_down_only_after_the_delay() -> None:
    a = autoscaler()
    assert a.decide(obs(0.0, 15.0)) == Pool.parse("small=2")  # nothing rented: at once
    assert a.decide(obs(10.0, 15.0, "small=2")) is None
    # Up at once, to big=2; small=2 keeps serving until big=2 has booted (make before break).
    assert a.decide(obs(20.0, 70.0, "small=2")) == Pool.parse("big=2,small=2")
    assert a.decide(obs(25.0, 70.0, "small=2", booting="big=2")) is None
    # The load falls: small=1 would hold it, but only after 300 s of it.
    assert a.decide(obs(30.0, 8.0, "big=2")) is None
    assert a.decide(obs(200.0, 9.0, "big=2")) is None
    assert a.decide(obs(329.0, 8.0, "big=2")) is None
    # After the delay it plans for the highest rate seen while waiting (9 q/s): small=1,
    # reached through the union, big=2 leaving once small=1 serves.
    assert a.decide(obs(330.0, 8.0, "big=2")) == Pool.parse("big=2,small=1")
    assert a.decide(obs(340.0, 8.0, "big=2,small=1")) == Pool.parse("small=1")


def test_a_rise_during_the_wait_restarts_it() -> None:
    a = autoscaler()
    assert a.decide(obs(0.0, 8.0, "big=2")) is None  # wait starts
    assert a.decide(obs(100.0, 70.0, "big=2")) is None  # big=2 still needed: wait ends
    assert a.decide(obs(200.0, 8.0, "big=2")) is None  # a new wait
    assert a.decide(obs(450.0, 8.0, "big=2")) is None
    assert a.decide(obs(500.0, 8.0, "big=2")) == Pool.parse("big=2,small=1")  # the union
    assert a.decide(obs(510.0, 8.0, "big=2", booting="small=1")) is None  # small=1 boots
    # Booted: the surplus goes at once (it only bridged the boot).
    assert a.decide(obs(520.0, 8.0, "big=2,small=1")) == Pool.parse("small=1")


def test_down_to_what_holds_every_forecast_of_the_last_delay() -> None:
    a = autoscaler()
    assert a.decide(obs(0.0, 70.0, "big=2")) is None  # less than 300 s seen
    assert a.decide(obs(100.0, 35.0, "big=2")) is None
    assert a.decide(obs(200.0, 18.0, "big=2")) is None
    # The forecast of t=0 (70 q/s) was in force until t=100: within the last 300 s until 400.
    assert a.decide(obs(300.0, 18.0, "big=2")) is None
    assert a.decide(obs(399.0, 18.0, "big=2")) is None
    # Then the highest is 35 q/s (from t=100): big=1 holds it.
    assert a.decide(obs(400.0, 18.0, "big=2")) == Pool.parse("big=1")
    assert a.decide(obs(410.0, 18.0, "big=1")) is None
    # From t=500 only 18 q/s is left: small=2, reached through the union.
    assert a.decide(obs(500.0, 18.0, "big=1")) == Pool.parse("big=1,small=2")


def test_a_burst_raises_the_forecast_and_a_step_does_not() -> None:
    a = autoscaler()
    # 100 q/s whose busiest second holds 130: the rate's own noise (100 + 3 * sqrt(100)).
    assert a.forecast_qps(obs(0.0, 100.0, peak_qps=130.0)) == 100.0
    assert a.forecast_qps(obs(10.0, 100.0, peak_qps=260.0)) == 100.0  # judged a window late
    for t in (20.0, 30.0):
        assert a.forecast_qps(obs(t, 100.0, peak_qps=130.0)) == 100.0
    # t=10's window is judged once the next has passed: 260 / 130, twice the rate.
    assert a.forecast_qps(obs(40.0, 100.0, peak_qps=130.0)) == 200.0
    # A step from 10 to 100 q/s: its edge window's busiest second is 2.5x its mean, but the
    # next window runs at 100 q/s, so the edge is not read as a burst.
    b = autoscaler()
    for t, rate, peak in ((0.0, 10.0, 13.0), (10.0, 10.0, 13.0), (20.0, 40.0, 100.0)):
        assert b.forecast_qps(obs(t, rate, peak_qps=peak)) == max(rate, 10.0)
    for t in (30.0, 40.0, 50.0, 60.0):
        assert b.forecast_qps(obs(t, 100.0, peak_qps=125.0)) == 100.0
    # Without a busiest second (live) there is no burst term.
    c = autoscaler()
    assert c.forecast_qps(obs(0.0, 100.0)) == 100.0
    # The first decision (the pool a run starts with) also judges the long window's busiest
    # second, at once: a burst of 260 in the last 300 s doubles the forecast from the start.
    d = autoscaler()
    first = obs(0.0, 100.0, peak_qps=130.0)
    long = replace(first.long, peak_qps=260.0)
    assert d.forecast_qps(replace(first, long=long)) == 200.0


def test_a_swap_rents_the_union_and_replans_when_the_load_moves_meanwhile() -> None:
    a = autoscaler()
    assert a.decide(obs(0.0, 15.0, "big=1")) is None  # the wait for small=2 starts
    assert a.decide(obs(300.0, 15.0, "big=1")) == Pool.parse("big=1,small=2")
    # While small=2 boots the load rises past what small=2 holds: big=1 stays.
    assert a.decide(obs(310.0, 35.0, "big=1", booting="small=2")) is None
    # Booted, small=2 no longer holds the load, and big=1 holds every forecast of the last
    # 300 s: the surplus small=2 leaves at once.
    assert a.decide(obs(320.0, 35.0, "big=1,small=2")) == Pool.parse("big=1")
    # The union is not over the budget's line: with a budget below it, the move is direct.
    b = autoscaler(budget=1.1)
    assert b.decide(obs(0.0, 15.0, "big=1")) is None
    assert b.decide(obs(300.0, 15.0, "big=1")) == Pool.parse("small=2")


def test_never_above_the_budget() -> None:
    a = autoscaler(budget=1.5)
    # 120 q/s needs big=3 (3 $/h); within 1.5 $/h the most capable pool is big=1,small=1.
    assert a.decide(obs(0.0, 120.0)) == Pool.parse("big=1,small=1")
    assert a.decide(obs(10.0, 120.0, "big=1,small=1")) is None
    # A rented pool over the budget is left at once, whatever the delay.
    assert a.decide(obs(20.0, 5.0, "big=3")) == Pool.parse("small=1")


def test_floor_pool_is_always_rented() -> None:
    settings = KairosSettings(
        headroom=1.0, noise_sigmas=0.0, trend_weight=0.0, min_pool=Pool.parse("big=1")
    )
    a = autoscaler(settings)
    assert a.decide(obs(0.0, 5.0)) == Pool.parse("big=1")  # big=1 is the floor and holds 5
    assert a.decide(obs(10.0, 45.0, "big=1")) == Pool.parse("big=1,small=1")
    with pytest.raises(ConfigError, match="above the budget"):
        autoscaler(settings, budget=0.5)


def test_forecast_adds_trend_noise_headroom_and_backlog() -> None:
    settings = KairosSettings(
        headroom=1.2, noise_sigmas=2.0, noise_window_s=10.0, trend_weight=1.0, backlog_drain_s=60.0
    )
    a = autoscaler(settings)
    short = TrafficWindow(30.0, 600, 20.0, None)
    long = TrafficWindow(300.0, 3000, 10.0, None)
    o = Observation(0.0, PoolState(Pool(()), Pool(()), 0), 30, 0, short, long)
    # slope (20 - 10) / 135 s, over the 60 s boot: 20 + 600 / 135.
    base = 20.0 + 10.0 / 135.0 * 60.0
    want = (base + 2.0 * math.sqrt(base / 10.0)) * 1.2 + 30 / 60.0
    assert a.forecast_qps(o) == pytest.approx(want, rel=1e-12)
    idle = TrafficWindow(30.0, 0, 0.0, None)
    quiet = Observation(0.0, o.pool, 0, 0, idle, TrafficWindow(300.0, 0, 0.0, None))
    assert a.forecast_qps(quiet) == settings.min_rate_qps


def test_choose_prefers_the_closer_of_near_equal_pools() -> None:
    known = [
        Choice(Pool.parse("big=1"), 1.0, 40.0),
        Choice(Pool.parse("small=4"), 1.2, 40.0),
        Choice(Pool.parse("small=3"), 0.9, 40.0),
    ]
    rented = Pool.parse("small=4")
    # Without a margin the cheapest wins; with 5% the closest within 5% (small=3, 1 away) wins
    # over big=1 (4 + 1 away); with 40% the rented pool itself is kept.
    cheapest = choose(known, 30.0, rented, PRICES)
    assert cheapest is not None and cheapest.pool == Pool.parse("small=3")
    near = choose(known, 30.0, Pool.parse("big=1"), PRICES, margin=0.15)
    assert near is not None and near.pool == Pool.parse("big=1")
    kept = choose(known, 30.0, rented, PRICES, margin=0.4)
    assert kept is not None and kept.pool == rented
    assert pool_distance(Pool.parse("big=1,small=2"), Pool.parse("small=3")) == 2


def test_choose_costs_pools_by_the_prices_and_falls_back_within_budget() -> None:
    known = [Choice(Pool.parse("small=1"), 0.3, 10.0), Choice(Pool.parse("big=2"), 2.0, 80.0)]
    c = choose(known, 50.0, Pool(()), PRICES, budget_per_hr=1.0)
    assert c is not None and c.pool == Pool.parse("small=1")
    assert choose(known, 50.0, Pool(()), PRICES, budget_per_hr=0.1) is None


def test_ladder_is_monotone_in_rate_and_cost() -> None:
    sc = scenario()
    ladder = Ladder(sc, "fcfs", LadderSettings(step=1.5, base_qps=20.0, queries=200))
    for rate in (30.0, 300.0, 100.0, 700.0):
        c = ladder.ensure(rate)
        assert c is not None and c.holds_qps >= rate * 0.999
    rungs = ladder.rungs()
    rates = [r for r, _ in rungs]
    costs = [c.cost_per_hr for _, c in rungs if c is not None]
    assert rates == sorted(rates) and len(costs) == len(rungs) >= 4
    assert costs == sorted(costs)
    assert all(c is not None and c.holds_qps >= r * 0.999 for r, c in rungs)
    # A second ask is answered from the cache.
    calls = ladder.planner_calls
    ladder.ensure(290.0)
    assert ladder.planner_calls == calls


def test_ladder_rung_is_the_planners_answer_with_its_bounds_kept() -> None:
    sc = scenario()
    settings = LadderSettings(step=1.5, base_qps=20.0, queries=200)
    ladder = Ladder(sc, "fcfs", settings)
    for k in (3, 6):
        rate = ladder.rate_of(k)
        plan = cheapest_for_rate(sc, rate, policy="fcfs", measurement=settings.measurement())
        c = ladder.rung(k)
        assert c is not None and c.pool == Pool(tuple(sorted(plan.pool.counts)))
        assert c.cost_per_hr == plan.cost_per_hr
        assert c.holds_qps == plan.allowable_qps
    # Each pool's fluid LP is solved once for the whole ladder: a rung between two planned
    # ones solves fewer than a fresh ladder planning it alone.
    lps = ladder.fluid.lps
    ladder.rung(5)
    fresh = Ladder(sc, "fcfs", settings)
    fresh.rung(5)
    assert 0 < ladder.fluid.lps - lps < fresh.fluid.lps


def test_ladder_holds_screens_the_rented_pool_once() -> None:
    sc = scenario()
    ladder = Ladder(sc, "fcfs", LadderSettings(step=1.5, base_qps=20.0, queries=200))
    big = Pool.parse("big=1")
    assert ladder.holds(big, 30.0)
    assert not ladder.holds(big, 600.0)
    searches = ladder.measurer.searches
    assert ladder.holds(big, 30.0) and not ladder.holds(big, 600.0)
    assert ladder.measurer.searches == searches
    assert not ladder.holds(Pool(()), 1.0)


def test_a_new_ladder_only_when_the_mix_moves() -> None:
    sc = scenario()
    ladders = Ladders(sc, "fcfs", LadderSettings(queries=200), drift_tv=0.1)
    first = ladders.for_mix(None)
    assert first.scenario.mix is sc.mix
    # Batches 9 and 10 share a power-of-two bin with 10: the same ladder.
    near = BatchMix("near", np.array([9, 10]), np.array([0.5, 0.5]))
    assert ladders.for_mix(near) is first
    far = fixed_mix(100)
    second = ladders.for_mix(far)
    assert second is not first and second.scenario.mix is far
    assert ladders.for_mix(fixed_mix(10)) is first  # back to a mix planned before
    assert mix_drift(far, fixed_mix(10)) == 1.0
    assert coarse(near).probs.tolist() == [1.0]


def test_observed_mix_replaces_the_scenarios_after_enough_queries() -> None:
    a = autoscaler(KairosSettings(min_mix_queries=100))
    mix = fixed_mix(20)
    few = TrafficWindow(300.0, 99, 1.0, mix)
    enough = TrafficWindow(300.0, 100, 1.0, mix)
    o = obs(0.0, 1.0)
    assert a.planning_mix(Observation(0.0, o.pool, 0, 0, o.short, few)) is None
    assert a.planning_mix(Observation(0.0, o.pool, 0, 0, o.short, enough)) is mix


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ConfigError, match="headroom"):
        KairosSettings(headroom=0.5)
    with pytest.raises(ConfigError, match="downscale_delay_s"):
        KairosSettings(downscale_delay_s=-1.0)
    with pytest.raises(ConfigError, match="ladder step"):
        LadderSettings(step=1.0)
