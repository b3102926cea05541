"""The planning pipeline: rank pools by an upper bound -> simulate the top few -> pick.

Each step is a plain function of the previous one's output, so callers (the CLI, the
comparison command, tests) can run any prefix of it. ``plan`` runs them all: by default it
ranks by the KAIROS bound and then simulates the top ``verify_top`` pools offline (no cloud
machine is used) and picks the best of them, reporting both the bound's pick and the verified
pick; ``verify_top=0`` is the pure bound ranking.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from kairos.allocator.choices import BOUNDS
from kairos.allocator.feasible import budget_too_small
from kairos.allocator.pools import check_budget
from kairos.allocator.ranking import top_pools
from kairos.allocator.result import Plan, RankedPool
from kairos.catalog import Pool
from kairos.distributor.base import policy_class
from kairos.errors import ConfigError
from kairos.scenario import Scenario
from kairos.sim.capacity import DEFAULT_MEASUREMENT, CapacityJob, Measurement, Measurer, measure_all


@dataclass(frozen=True)
class PlanDefaults:
    """Defaults of ``plan`` (and of ``kairos plan``'s options), declared once."""

    bound: str = "kairos"
    top: int = 10  # ranked pools reported
    verify_top: int = 5  # pools simulated before picking (0: the bound's pick, no simulation)
    policy: str = "kairos"  # distribution policy the verification simulates
    # The top ``verify_top`` by this second bound are simulated too (None: only the first).
    # Each bound misranks pools the other gets right: on an 8-type catalog the best pool was
    # 174th by the KAIROS bound and 6th by the fluid bound (docs/allocator.md).
    second_bound: str | None = "fluid"


PLAN_DEFAULTS = PlanDefaults()


def verify(
    scenario: Scenario,
    ranked: list[RankedPool],
    *,
    policy: str = PLAN_DEFAULTS.policy,
    measurement: Measurement = DEFAULT_MEASUREMENT,
    measurer: Measurer | None = None,
    progress: Callable[[RankedPool], None] | None = None,
    screen: int = 0,
) -> list[RankedPool]:
    """Simulate each pool's allowable throughput; best first (ties: cheaper, then rank).

    ``screen`` > 0: only the first ``screen`` pools are searched in full and the rest are
    screened against the best of them (``screened_search``); a screened-out pool gets 0 q/s.
    """
    policy_class(policy)
    if screen:
        found = screened_search(
            scenario, [r.pool for r in ranked], policy, measurement, measurer, screen
        )
        done = [r.verified(qps) for r, (qps, _) in zip(ranked, found, strict=True)]
        if progress is not None:
            for r in ranked:
                progress(r)
        return _best_first(done)
    jobs = [CapacityJob(scenario, r.pool, policy, measurement) for r in ranked]
    done = [
        r.verified(res.allowable_qps)
        for r, res in zip(
            ranked,
            measure_all(
                jobs,
                measurer,
                None if progress is None else lambda i, res: progress(ranked[i]),
            ),
            strict=True,
        )
    ]
    return _best_first(done)


def _best_first(done: list[RankedPool]) -> list[RankedPool]:
    order = sorted(
        range(len(done)), key=lambda i: (-(done[i].allowable_qps or 0.0), done[i].cost_per_hr, i)
    )
    return [done[i] for i in order]


def screened_search(
    scenario: Scenario,
    pools: list[Pool],
    policy: str,
    measurement: Measurement,
    measurer: Measurer | None,
    head: int,
) -> list[tuple[float, bool]]:
    """``(allowable qps, searched in full)`` per pool: the first ``head`` are searched in full,
    the rest are screened against the best of those (``screen_then_search``, as the exact
    oracle screens).

    A pool that fails that trial cannot beat the best (pass/fail is monotone in the rate
    within the precision, the oracle's premise), so the best of the result is the best the
    full searches give; the work is ``head`` searches plus one trial per other pool (plus a
    search per pool that passes). Fixed ``head``, so ``--jobs`` changes nothing.
    """
    first = [CapacityJob(scenario, p, policy, measurement) for p in pools[:head]]
    found = [(res.allowable_qps, True) for res in measure_all(first, measurer)]
    floor = max((q for q, _ in found), default=0.0)
    return found + screen_then_search(scenario, pools[head:], policy, measurement, measurer, floor)


def screen_then_search(
    scenario: Scenario,
    pools: list[Pool],
    policy: str,
    measurement: Measurement,
    measurer: Measurer | None,
    floor: float,
    extra: list[Pool] | None = None,
) -> list[tuple[float, bool]]:
    """``(allowable qps, fully searched)`` per pool; a pool whose trial one precision step
    below ``floor`` fails cannot beat it and is not searched further (qps reported as 0);
    with no floor (``floor`` <= 0) every pool is searched. ``extra`` pools are screened at the
    same rate alongside (the measurer keeps the results)."""
    if floor > 0:
        # Screen one precision step below the floor: pass/fail near a pool's allowable rate
        # is not exactly monotone, so a pool within the precision of the best is searched.
        rate = floor / (1.0 + measurement.precision)
        screens = [
            CapacityJob(scenario, p, policy, measurement, screen_qps=rate)
            for p in pools + (extra or [])
        ]
        passed = [res.allowable_qps > 0 for res in measure_all(screens, measurer)][: len(pools)]
    else:
        passed = [True] * len(pools)
    todo = [p for p, ok in zip(pools, passed, strict=True) if ok]
    jobs = [CapacityJob(scenario, p, policy, measurement) for p in todo]
    found = iter(res.allowable_qps for res in measure_all(jobs, measurer))
    return [(next(found), True) if ok else (0.0, False) for ok in passed]


def plan(
    scenario: Scenario,
    budget_per_hr: float,
    *,
    bound: str = PLAN_DEFAULTS.bound,
    caps: Mapping[str, int] | None = None,
    top: int = PLAN_DEFAULTS.top,
    verify_top: int = PLAN_DEFAULTS.verify_top,
    policy: str = PLAN_DEFAULTS.policy,
    second_bound: str | None = PLAN_DEFAULTS.second_bound,
    measurement: Measurement = DEFAULT_MEASUREMENT,
    measurer: Measurer | None = None,
    progress: Callable[[RankedPool], None] | None = None,
    screen: int = 0,
) -> Plan:
    """Choose a pool under ``budget_per_hr``: rank by ``bound``, simulate the top ``verify_top``.

    With ``verify_top`` > 0 the first ``verify_top`` ranked pools, and the first
    ``verify_top`` by ``second_bound`` (when set and different), are simulated under
    ``policy`` and the pool with the highest simulated allowable throughput is chosen; the
    bound's own first pick stays in the plan as ``bound_pick``. Every pool keeps ``bound``'s
    value as its ``upper_bound_qps``. ``screen`` > 0: the simulated pools after the first
    ``screen`` are screened (``verify``): the same pick, screened-out pools reported at 0.
    """
    BOUNDS.check(bound)
    if second_bound is not None:
        BOUNDS.check(second_bound)
    check_budget(budget_per_hr)
    if not isinstance(top, int) or top < 1 or not isinstance(verify_top, int) or verify_top < 0:
        raise ConfigError(
            f"--top {top!r} / --verify {verify_top!r} is out of range.",
            "pass --top 1 or more and --verify 0 or more (0: no simulation).",
        )
    if verify_top:
        policy_class(policy)
    ranking = top_pools(scenario, budget_per_hr, bound, max(top, verify_top), caps)
    ranked = ranking.ranked
    if not ranked:
        raise budget_too_small(scenario, budget_per_hr, bound, caps)
    bound_pick = ranked[0]
    explored = 0
    if verify_top:
        candidates = ranked[:verify_top] + _second_opinion(
            scenario, budget_per_hr, bound, second_bound, verify_top, caps, ranked[:verify_top]
        )
        head = verify(
            scenario,
            candidates,
            policy=policy,
            measurement=measurement,
            measurer=measurer,
            progress=progress,
            screen=screen,
        )
        explored = len(head)
        seen = {r.pool for r in head}
        ranked = head + [r for r in ranked[verify_top:] if r.pool not in seen]
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
        pools_considered=ranking.pools_considered,
        policy=policy if verify_top else None,
        bound_pick=bound_pick,
        ranking=ranking.method,
    )


def _second_opinion(
    scenario: Scenario,
    budget_per_hr: float,
    bound: str,
    second: str | None,
    k: int,
    caps: Mapping[str, int] | None,
    already: list[RankedPool],
) -> list[RankedPool]:
    """The top ``k`` by ``second`` not already among ``already``, scored by ``bound``."""
    if second is None or second == bound:
        return []
    have = {r.pool for r in already}
    extra = [r for r in top_pools(scenario, budget_per_hr, second, k, caps).ranked]
    extra = [r for r in extra if r.pool not in have]
    if not extra:
        return []
    types = scenario.instance_types
    counts = np.array([[r.pool.count(t) for t in types] for r in extra])
    values = BOUNDS.get(bound).score(scenario, types, counts)
    return [replace(r, upper_bound_qps=float(v)) for r, v in zip(extra, values, strict=True)]
