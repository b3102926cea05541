"""Baselines that know the whole trace: three static pools and the hindsight oracle.

Every one plans on the trace's own batch mix with the same ladder of cheapest pools by rate
as the kairos autoscaler (``LadderSettings``), so the comparison differs only in what each
knows and when it moves:

- ``static-peak``: the cheapest pool that holds the trace's peak-minute rate, all day.
- ``static-mean``: the same for the trace's mean rate (cheap, and misses QoS at the peak).
- ``static-best``: the cheapest fixed pool whose replay of the whole trace keeps
  ``QOS_QUANTILE`` of its queries within QoS: what a user who knew the day would rent. The
  candidates are the ladder's pools from the mean to a little above the peak, in increasing
  cost; a bisection over them replays the trace (``kairos.sim.engine.simulate``: a fixed pool
  needs no autoscaler) about log2(candidates) times, so a long trace costs a few replays.
- ``oracle``: per minute, the cheapest pool that holds that minute's rate, asked for one
  boot delay ahead of the minute (the pool rented at any time covers every minute whose
  pool is booting or serving). The floor the others are judged against.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

from kairos.allocator.pools import catalog_types
from kairos.catalog import Pool
from kairos.control.autoscale import AUTOSCALERS, AutoscaleContext
from kairos.control.autoscale.ladder import (
    Ladder,
    LadderSettings,
    canonical,
    choose,
    minute_rates_qps,
    pool_union,
    trace_mix,
)
from kairos.errors import ConfigError, InfeasibleError
from kairos.scenario import QOS_QUANTILE, Scenario
from kairos.sim.autoscale import Observation
from kairos.sim.engine import simulate
from kairos.workload import QueryStream, check_batches_within

# static-best also tries rungs this many steps above the peak, in case the peak minute's
# pool misses QoS over the whole trace (bursts within the minute).
ABOVE_PEAK_RUNGS = 3

# A replay of a candidate pool: the share of the trace's queries within QoS.
Replay = Callable[[Pool], float]


class StaticAutoscaler:
    """Rents one pool from the first tick on and never moves."""

    def __init__(self, name: str, pool: Pool) -> None:
        self.name = name
        self.pool = canonical(pool)

    def decide(self, obs: Observation) -> Pool | None:
        return None if canonical(obs.pool.rented) == self.pool else self.pool


def hindsight_scenario(ctx: AutoscaleContext, name: str) -> tuple[Scenario, QueryStream]:
    """The context's scenario on the trace's own mix, and the trace; a clear error without one."""
    trace = ctx.trace
    if trace is None or len(trace) == 0:
        raise ConfigError(
            f"autoscaler {name!r} plans with hindsight and needs the whole trace.",
            "pass --trace FILE.csv (with queries), or pick kairos, ray-serve or skyserve.",
        )
    mix = trace_mix(trace)
    profiles = ctx.scenario.profiles
    check_batches_within(mix.max_batch, "the trace", profiles.max_batch, ctx.scenario.model)
    return replace(ctx.scenario, mix=mix), trace


def cheapest_holding(ladder: Ladder, rate_qps: float, budget_per_hr: float | None) -> Pool:
    """The cheapest pool of the ladder that holds ``rate_qps`` (the most capable within the
    budget when none that holds it fits)."""
    ladder.ensure(rate_qps, budget_per_hr)
    c = choose(
        ladder.known, rate_qps, Pool(()), ladder.scenario.prices, budget_per_hr=budget_per_hr
    )
    if c is None:
        raise InfeasibleError(
            f"no pool of the catalog holds {rate_qps:.4g} q/s of {ladder.scenario.model!r} "
            "within the budget.",
            "raise --budget-per-hr or --qos-ms, or add instance types to --prices.",
        )
    return c.pool


def _ladder(ctx: AutoscaleContext, name: str, settings: LadderSettings) -> Ladder:
    scenario, _ = hindsight_scenario(ctx, name)
    return Ladder(scenario, ctx.policy, settings)


def static_for_rate(
    ctx: AutoscaleContext,
    name: str,
    rate_of: Callable[[QueryStream], float],
    settings: LadderSettings,
) -> StaticAutoscaler:
    ladder = _ladder(ctx, name, settings)
    assert ctx.trace is not None  # hindsight_scenario checked it
    return StaticAutoscaler(name, cheapest_holding(ladder, rate_of(ctx.trace), ctx.budget_per_hr))


def peak_rate_qps(trace: QueryStream) -> float:
    return float(minute_rates_qps(trace).max())


def mean_rate_qps(trace: QueryStream) -> float:
    return float(minute_rates_qps(trace).mean())


def replay_share(scenario: Scenario, policy: str, trace: QueryStream, seed: int = 0) -> Replay:
    """Replays of ``trace`` through fixed pools; each pool's share within QoS, computed once."""
    done: dict[Pool, float] = {}

    def share(pool: Pool) -> float:
        key = canonical(pool)
        if key not in done:
            res = simulate(scenario, key, policy, trace, seed=seed)
            done[key] = res.records.metrics(scenario.qos_ms).qos_met_fraction
        return done[key]

    return share


def best_static_pool(
    ladder: Ladder,
    trace: QueryStream,
    replay: Replay,
    budget_per_hr: float | None = None,
) -> Pool:
    """The cheapest ladder pool (mean rate up to a little above the peak) whose replay keeps
    ``QOS_QUANTILE`` within QoS, by bisection over the candidates in increasing cost; the
    costliest candidate when none does."""
    lo_k = ladder.bucket(mean_rate_qps(trace))
    hi_k = ladder.bucket(peak_rate_qps(trace)) + ABOVE_PEAK_RUNGS
    ks = list(range(lo_k, hi_k + 1))

    def pool_at(i: int) -> Pool:
        return cheapest_holding(ladder, ladder.rate_of(ks[i]), budget_per_hr)

    def passes(i: int) -> bool:
        return replay(pool_at(i)) >= QOS_QUANTILE

    # Rung pools grow in cost with the rate (the ladder keeps them monotone), so the passing
    # candidates are a suffix: find where it starts.
    lo, hi = 0, len(ks) - 1
    if not passes(hi):
        return pool_at(hi)
    while lo < hi:
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid + 1
    return pool_at(lo)


class OracleAutoscaler:
    """Per minute the cheapest pool that holds that minute's rate, asked for ``lead_s`` ahead."""

    name = "oracle"

    def __init__(self, minute_pools: list[Pool], lead_s: float) -> None:
        self.minute_pools = [canonical(p) for p in minute_pools]
        self.lead_s = lead_s

    def wanted(self, now_s: float) -> Pool:
        """What must be rented at ``now_s``: every minute's pool from now to ``lead_s`` ahead."""
        last = len(self.minute_pools) - 1
        first = min(max(0, math.floor(now_s / 60.0)), last)
        until = min(max(0, math.floor((now_s + self.lead_s) / 60.0)), last)
        pool = self.minute_pools[first]
        for m in range(first + 1, until + 1):
            pool = pool_union(pool, self.minute_pools[m])
        return pool

    def decide(self, obs: Observation) -> Pool | None:
        pool = self.wanted(obs.now_s)
        return None if canonical(obs.pool.rented) == pool else pool


def oracle_pools(ladder: Ladder, trace: QueryStream, budget_per_hr: float | None) -> list[Pool]:
    """Each minute's cheapest pool for that minute's exact rate (an idle minute gets the
    cheapest pool of the ladder's lowest rung)."""
    by_rate: dict[float, Pool] = {}
    out = []
    for rate in minute_rates_qps(trace).tolist():
        if rate not in by_rate:
            by_rate[rate] = cheapest_holding(ladder, rate, budget_per_hr)
        out.append(by_rate[rate])
    return out


@AUTOSCALERS.register("static-peak")
def static_peak(ctx: AutoscaleContext) -> StaticAutoscaler:
    return static_for_rate(ctx, "static-peak", peak_rate_qps, LadderSettings())


@AUTOSCALERS.register("static-mean")
def static_mean(ctx: AutoscaleContext) -> StaticAutoscaler:
    return static_for_rate(ctx, "static-mean", mean_rate_qps, LadderSettings())


@AUTOSCALERS.register("static-best")
def static_best(ctx: AutoscaleContext) -> StaticAutoscaler:
    scenario, trace = hindsight_scenario(ctx, "static-best")
    ladder = Ladder(scenario, ctx.policy, LadderSettings())
    replay = replay_share(scenario, ctx.policy, trace)
    return StaticAutoscaler(
        "static-best", best_static_pool(ladder, trace, replay, ctx.budget_per_hr)
    )


@AUTOSCALERS.register("oracle")
def oracle(ctx: AutoscaleContext) -> OracleAutoscaler:
    scenario, trace = hindsight_scenario(ctx, "oracle")
    ladder = Ladder(scenario, ctx.policy, LadderSettings())
    lead_s = max(ctx.cloud.boot_delay_s(t) for t in catalog_types(scenario))
    return OracleAutoscaler(oracle_pools(ladder, trace, ctx.budget_per_hr), lead_s)
