"""The planning pipeline: enumerate pools -> bound each -> (optionally) solve exactly -> verify.

Each step is a plain function of the previous one's output, so callers (the CLI, the
comparison command, tests) can run any prefix of it. ``plan`` runs them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np

from kairos.allocator.bounds import kairos_bounds, kairos_tables
from kairos.allocator.fluid import MISS_BUDGET, fluid_bounds, fluid_tables, solve_milp
from kairos.allocator.pools import (
    COST_EPS,
    PoolMatrix,
    catalog_types,
    check_budget,
    pool_matrix,
    type_caps,
)
from kairos.allocator.result import Plan, RankedPool
from kairos.catalog import Pool
from kairos.errors import ConfigError, InfeasibleError
from kairos.scenario import Scenario
from kairos.sim.capacity import DEFAULT_PRECISION, QOS_QUANTILE, allowable_throughput

BOUNDS = ("kairos", "fluid")
DEFAULT_TOP = 10
# One LP per pool costs a few ms; past this many pools the fluid ranking keeps only pools to
# which no instance can be added within budget (the fluid bound never drops when adding one).
FLUID_RANK_LIMIT = 2000
VERIFY_QUERIES = 2000
MAX_SUBSET_TYPES = 20


def check_bound(bound: str) -> str:
    if bound not in BOUNDS:
        raise ConfigError(
            f"bound {bound!r} is not known (known: {', '.join(BOUNDS)}).",
            "pass --bound kairos (the paper's bound) or --bound fluid (the exact LP).",
        )
    return bound


def score_pools(scenario: Scenario, pools: PoolMatrix, bound: str) -> np.ndarray:
    """Step 2: the chosen upper bound (qps) of every pool."""
    if check_bound(bound) == "kairos":
        return kairos_bounds(scenario, pools.types, pools.counts)
    return fluid_bounds(scenario, pools.types, pools.counts)


def maximal_pools(
    scenario: Scenario, pools: PoolMatrix, budget_per_hr: float, caps: Mapping[str, int] | None
) -> PoolMatrix:
    """Pools to which no instance of any type can be added within budget and caps."""
    limits = type_caps(scenario, budget_per_hr, caps)
    cap = np.array([limits[t] for t in pools.types])
    room = (pools.cost_per_hr[:, None] + pools.prices_per_hr[None, :]) <= budget_per_hr + COST_EPS
    grow = room & (pools.counts < cap[None, :])
    keep = ~grow.any(axis=1)
    return replace(pools, counts=pools.counts[keep], cost_per_hr=pools.cost_per_hr[keep])


def rank(pools: PoolMatrix, bounds: np.ndarray, top: int | None) -> list[RankedPool]:
    """Pools with a positive bound, best bound first, then cheaper (then enumeration order)."""
    order = np.lexsort((np.arange(len(pools)), pools.cost_per_hr, -bounds))
    order = order[bounds[order] > 0]
    if top is not None:
        order = order[:top]
    return [
        RankedPool(pools.pool(int(i)), float(pools.cost_per_hr[i]), float(bounds[i])) for i in order
    ]


def verify(
    scenario: Scenario,
    ranked: list[RankedPool],
    *,
    policy: str = "kairos",
    queries: int = VERIFY_QUERIES,
    seed: int = 0,
    precision: float = DEFAULT_PRECISION,
    progress: Callable[[RankedPool], None] | None = None,
) -> list[RankedPool]:
    """Step 4: simulate each pool's allowable throughput; best first (ties: cheaper first)."""
    done = []
    for entry in ranked:
        res = allowable_throughput(
            scenario, entry.pool, policy, queries=queries, seed=seed, precision=precision
        )
        done.append(entry.verified(res.allowable_qps))
        if progress is not None:
            progress(done[-1])
    return sorted(done, key=lambda r: (-(r.allowable_qps or 0.0), r.cost_per_hr))


def plan(
    scenario: Scenario,
    budget_per_hr: float,
    *,
    bound: str = "kairos",
    caps: Mapping[str, int] | None = None,
    top: int = DEFAULT_TOP,
    verify_top: int = 0,
    policy: str = "kairos",
    queries: int = VERIFY_QUERIES,
    seed: int = 0,
    precision: float = DEFAULT_PRECISION,
    progress: Callable[[RankedPool], None] | None = None,
) -> Plan:
    """Choose a pool under ``budget_per_hr`` by ``bound``; simulate the top ``verify_top``.

    With ``verify_top`` > 0 the first ``verify_top`` ranked pools are simulated under
    ``policy`` and re-ranked by allowable throughput; the chosen pool is the best of them.
    """
    check_bound(bound)
    check_budget(budget_per_hr)
    if top < 1 or verify_top < 0:
        raise ConfigError(
            f"--top {top!r} / --verify {verify_top!r} is out of range.",
            "pass --top 1 or more and --verify 0 or more.",
        )
    try:
        pools = pool_matrix(scenario, budget_per_hr, caps)
    except ConfigError:
        if bound != "fluid":
            raise
        pools = None
    if pools is not None and bound == "fluid" and len(pools) > FLUID_RANK_LIMIT:
        pools = maximal_pools(scenario, pools, budget_per_hr, caps)
    if pools is None or (bound == "fluid" and len(pools) > FLUID_RANK_LIMIT):
        result = solve_milp(scenario, budget_per_hr, caps)
        ranked = list(result.ranked)
        considered = 0
    else:
        bounds = score_pools(scenario, pools, bound)
        ranked = rank(pools, bounds, max(top, verify_top))
        considered = len(pools)
    if not ranked:
        raise budget_too_small(scenario, budget_per_hr, bound, caps)
    explored = 0
    if verify_top:
        head = verify(
            scenario,
            ranked[:verify_top],
            policy=policy,
            queries=queries,
            seed=seed,
            precision=precision,
            progress=progress,
        )
        explored = len(head)
        ranked = head + ranked[verify_top:]
    best = ranked[0]
    return Plan(
        model=scenario.model,
        budget_per_hr=float(budget_per_hr),
        qos_ms=scenario.qos_ms,
        bound=bound,
        pool=best.pool,
        cost_per_hr=best.cost_per_hr,
        upper_bound_qps=best.upper_bound_qps,
        ranked=tuple(ranked[: max(top, explored)]),
        allowable_qps=best.allowable_qps,
        explorations=explored,
        pools_considered=considered,
        policy=policy if verify_top else None,
    )


def feasible_type_sets(scenario: Scenario, types: tuple[str, ...], bound: str) -> np.ndarray:
    """``[2**T]`` bool: can a pool with exactly this set of types (bit t = types[t]) meet QoS?

    Whether a pool's bound is positive depends only on which types it holds: for the KAIROS
    bound, 99% of the mix must have a present type whose p99 service time is within QoS; for
    the fluid bound, the mix's least possible expected miss share must be within 1%.
    """
    t_n = len(types)
    bits = ((np.arange(1 << t_n)[:, None] >> np.arange(t_n)[None, :]) & 1).astype(bool)
    if bound == "kairos":
        tab = kairos_tables(scenario, types)
        probs = scenario.mix.probs[scenario.mix.probs > 0]
        covered = (bits.astype(np.int64) @ tab.ok_p99.astype(np.int64)) > 0
        return covered.astype(float) @ probs >= QOS_QUANTILE - 1e-12
    ftab = fluid_tables(scenario, types)
    miss = np.where(bits[:, :, None], ftab.miss[None, :, :], np.inf).min(axis=1)
    return np.where(np.isfinite(miss), miss, 1.0) @ ftab.probs <= MISS_BUDGET + 1e-12


def cheapest_feasible_pool(
    scenario: Scenario, bound: str = "kairos", caps: Mapping[str, int] | None = None
) -> Pool | None:
    """The cheapest pool (one instance per type of the cheapest workable type set), or None."""
    types = tuple(t for t in catalog_types(scenario) if caps is None or caps.get(t, 1) > 0)
    if not types:
        return None
    if len(types) > MAX_SUBSET_TYPES:
        # 2**T type sets is too many: search among the cheapest types only.
        by_price = sorted(types, key=scenario.prices.price_per_hr)
        types = tuple(by_price[:MAX_SUBSET_TYPES])
    ok = feasible_type_sets(scenario, types, bound)
    ok[0] = False
    if not ok.any():
        return None
    prices = np.array([scenario.prices.price_per_hr(t) for t in types])
    bits = (np.arange(1 << len(types))[:, None] >> np.arange(len(types))[None, :]) & 1
    cost = np.where(ok, bits @ prices, np.inf)
    best = int(np.argmin(cost))
    return Pool.of([(t, int(b)) for t, b in zip(types, bits[best], strict=True)])


def budget_too_small(
    scenario: Scenario, budget_per_hr: float, bound: str, caps: Mapping[str, int] | None = None
) -> InfeasibleError:
    """The error for a budget (or caps) under which no pool can meet QoS."""
    cheapest = cheapest_feasible_pool(scenario, bound, caps)
    if cheapest is None:
        return InfeasibleError(
            f"no pool of {', '.join(catalog_types(scenario))} can meet the p99 QoS of "
            f"{scenario.qos_ms:g} ms for model {scenario.model!r}, at any budget: too many "
            "queries are too slow on every type even with no queueing.",
            "raise --qos-ms, or add a faster instance type (--profiles/--prices).",
        )
    cost = cheapest.cost_per_hr(scenario.prices)
    return InfeasibleError(
        f"budget ${budget_per_hr:g}/h buys no pool that can meet the p99 QoS of "
        f"{scenario.qos_ms:g} ms for model {scenario.model!r}; the cheapest pool that could is "
        f"{cheapest} at ${cost:.4g}/h.",
        f"raise --budget-per-hr to at least {cost:.4g} (or relax --qos-ms / the --max caps).",
    )
