"""The cheapest pool for a target rate: the question an autoscaler asks.

``cheapest_for_rate`` returns the cheapest pool whose simulated allowable throughput is at
least ``target_qps`` (within optional per-type caps). The fluid bound is an upper bound on
the allowable throughput of every policy, so a pool whose fluid bound is below the target
cannot hold it: the candidates are the pools whose fluid bound reaches the target, taken in
increasing cost, and each is tested with one simulated trial at the target rate (the same
pass/fail test the allowable-throughput search applies at every rate). The first that passes
is the answer; it is then measured in full so its allowable throughput can be reported.

Candidates come from the pool listing of a budget window that starts at the cost of the
cheapest single-type pool whose fluid bound reaches the target and doubles while no
candidate passes (bounded by ``MAX_WINDOW_DOUBLINGS``); a catalog whose window holds too many
pools to list is served by the fluid MILP instead, with the cost as its objective, one pool
at a time in increasing cost (no-good cuts). Trials run in fixed waves, cheapest first, so
the answer does not depend on how many processes run them.

``single_type=True`` restricts the pool space to pools of one instance type (what the
homogeneous scheme of ``kairos compare --target-qps`` rents): the fluid bound of ``n``
instances of one type is ``n`` times that of one, so each type's candidates start at the
smallest count whose bound reaches the target and grow by one, merged across types in cost
order (no listing, so any catalog size works).

``verify=False`` answers from a bound alone: the cheapest pool whose ``bound`` (the KAIROS
bound by default, a heuristic; or the fluid bound) reaches the target, simulating nothing.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np

from kairos.allocator.choices import BOUNDS
from kairos.allocator.fluid import fluid_bounds
from kairos.allocator.fluid_cache import FluidCache
from kairos.allocator.milp import FluidProgram
from kairos.allocator.pools import catalog_types, listed_pools
from kairos.allocator.result import RankedPool
from kairos.catalog import Pool
from kairos.distributor.base import policy_class
from kairos.errors import InfeasibleError
from kairos.limits import BUDGET_PER_HR, RATE_QPS
from kairos.scenario import Scenario
from kairos.sim.capacity import DEFAULT_MEASUREMENT, CapacityJob, Measurement, Measurer

WAVE = 4  # candidates tried together (the answer never depends on it)
MAX_WINDOW_DOUBLINGS = 6  # the budget window grows to at most 64 x its start
MAX_CANDIDATES = 2000  # trials before giving up
SCORE_CHUNK = 256  # pools scored by the bound at a time


@dataclass(frozen=True)
class TargetPlan:
    model: str
    target_qps: float
    qos_ms: float
    bound: str
    pool: Pool
    cost_per_hr: float
    upper_bound_qps: float  # ``bound``'s value for the pool
    fluid_bound_qps: float
    allowable_qps: float | None  # simulated (None with verify=False)
    policy: str | None
    candidates_tried: int  # trials at the target rate
    tried: tuple[RankedPool, ...]  # every pool tried, in cost order, with its verdict

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "target_qps": self.target_qps,
            "qos_ms": self.qos_ms,
            "bound": self.bound,
            "pool": self.pool.as_dict(),
            "pool_text": str(self.pool),
            "cost_per_hr": self.cost_per_hr,
            "upper_bound_qps": self.upper_bound_qps,
            "fluid_bound_qps": self.fluid_bound_qps,
            "allowable_qps": self.allowable_qps,
            "policy": self.policy,
            "candidates_tried": self.candidates_tried,
            "tried": [r.as_dict() for r in self.tried],
        }


def _score(scenario: Scenario, bound: str, pools: list[Pool]) -> np.ndarray:
    types = catalog_types(scenario)
    counts = np.array([[p.count(t) for t in types] for p in pools])
    return BOUNDS.get(bound).score(scenario, types, counts)


def _reaching(
    scenario: Scenario,
    bound: str,
    pools: list[Pool],
    target_qps: float,
    fluid: FluidCache | None,
) -> np.ndarray:
    """``bound``'s value of each pool; with the fluid cache, 0 where it cannot reach
    ``target_qps`` (the only question the caller asks of those)."""
    if bound != "fluid" or fluid is None:
        return _score(scenario, bound, pools)
    counts = np.array([[p.count(t) for t in fluid.types] for p in pools])
    return fluid.reaching(counts, target_qps)


def start_budget(scenario: Scenario, target_qps: float, caps: Mapping[str, int] | None) -> float:
    """A cost at which a pool whose fluid bound reaches the target exists: the cheapest
    single-type one, or, where no single type can serve the mix, the fluid MILP's cheapest
    pool (a mix of types may serve what none serves alone)."""
    best = math.inf
    for t in catalog_types(scenario):
        one = float(fluid_bounds(scenario, (t,), np.array([[1]]))[0])
        if one <= 0:
            continue
        n = math.ceil(target_qps / one - 1e-9)
        if caps is not None and t in caps and n > caps[t]:
            continue
        best = min(best, n * scenario.prices.price_per_hr(t))
    if math.isinf(best):
        program = FluidProgram(scenario, BUDGET_PER_HR.hi, caps, target_qps=target_qps)
        first = next(program.pools(), None)
        if first is None:
            raise InfeasibleError(
                f"no pool of the catalog (within the caps) can serve {target_qps:g} q/s of "
                f"{scenario.model!r}'s batch mix within QoS {scenario.qos_ms:g} ms, even by "
                "the fluid upper bound.",
                "lower --target-qps, raise --qos-ms, lift the --max caps, or add instance "
                "types to --prices.",
            )
        best = first.cost_per_hr
    return best


def candidates(
    scenario: Scenario,
    target_qps: float,
    bound: str,
    caps: Mapping[str, int] | None,
    single_type: bool = False,
    fluid: FluidCache | None = None,
) -> Iterator[RankedPool]:
    """Pools whose ``bound`` reaches ``target_qps``, in increasing cost (no repeats).

    With the fluid bound, ``fluid`` (a new one when None) keeps the LPs solved and rules out
    by dual bounds the pools that cannot reach the rate (the same pools come out)."""
    if single_type:
        yield from _single_type(scenario, target_qps, bound, caps)
        return
    if bound == "fluid" and fluid is None:
        fluid = FluidCache(scenario)
    budget = start_budget(scenario, target_qps, caps)
    seen: set[Pool] = set()
    for _ in range(MAX_WINDOW_DOUBLINGS + 1):
        listed = listed_pools(scenario, budget, caps)
        if listed is None:  # too many to list
            yield from _by_milp(scenario, target_qps, budget * 2**MAX_WINDOW_DOUBLINGS, caps)
            return
        cheapest_first = np.argsort(listed.cost_per_hr, kind="stable")
        pools = (listed.pool(int(i)) for i in cheapest_first)
        fresh = [p for p in pools if p not in seen and p.size > 0]
        # Scored a chunk at a time, cheapest first: the caller usually stops long before a
        # large window is through (the fluid bound is an LP per pool).
        for start in range(0, len(fresh), SCORE_CHUNK):
            chunk = fresh[start : start + SCORE_CHUNK]
            values = _reaching(scenario, bound, chunk, target_qps, fluid)
            for pool, value in zip(chunk, values.tolist(), strict=True):
                seen.add(pool)
                if value >= target_qps * (1 - 1e-9):
                    yield RankedPool(pool, pool.cost_per_hr(scenario.prices), float(value))
        budget *= 2


def _single_type(
    scenario: Scenario, target_qps: float, bound: str, caps: Mapping[str, int] | None
) -> Iterator[RankedPool]:
    """Single-type pools whose fluid bound (and ``bound``) reaches the target, cheapest first,
    up to the cost the general listing reaches (``MAX_WINDOW_DOUBLINGS``)."""
    heap: list[tuple[float, str, int]] = []
    for t in catalog_types(scenario):
        one = float(fluid_bounds(scenario, (t,), np.array([[1]]))[0])
        if one > 0:
            n = max(1, math.ceil(target_qps / one - 1e-9))
            heap.append((n * scenario.prices.price_per_hr(t), t, n))
    if not heap:
        raise _none_holds(scenario, target_qps, "single-type fluid-bound")
    heapq.heapify(heap)
    ceiling = heap[0][0] * 2**MAX_WINDOW_DOUBLINGS
    while heap:
        cost, t, n = heapq.heappop(heap)
        if cost > ceiling * (1 + 1e-9) or (caps is not None and n > caps.get(t, n)):
            continue  # this type is done (its later counts cost more still)
        heapq.heappush(heap, ((n + 1) * scenario.prices.price_per_hr(t), t, n + 1))
        pool = Pool.of({t: n})
        value = float(_score(scenario, bound, [pool])[0])
        if value >= target_qps * (1 - 1e-9):
            yield RankedPool(pool, pool.cost_per_hr(scenario.prices), value)


def _by_milp(
    scenario: Scenario, target_qps: float, budget: float, caps: Mapping[str, int] | None
) -> Iterator[RankedPool]:
    program = FluidProgram(scenario, budget, caps, target_qps=target_qps)
    yield from program.pools()


def cheapest_for_rate(
    scenario: Scenario,
    target_qps: float,
    *,
    caps: Mapping[str, int] | None = None,
    bound: str = "kairos",
    verify: bool = True,
    policy: str = "kairos",
    measurement: Measurement = DEFAULT_MEASUREMENT,
    measurer: Measurer | None = None,
    progress: Callable[[RankedPool], None] | None = None,
    single_type: bool = False,
    fluid: FluidCache | None = None,
) -> TargetPlan:
    """The cheapest pool that holds ``target_qps`` (see the module docstring). ``fluid``
    keeps the fluid bounds across calls on one scenario (the autoscaler's ladder)."""
    RATE_QPS.check(target_qps, "--target-qps")
    BOUNDS.check(bound)
    if not verify:
        first = next(iter(candidates(scenario, target_qps, bound, caps, single_type)), None)
        if first is None:
            raise _none_holds(scenario, target_qps, bound)
        return _result(scenario, target_qps, bound, first, None, None, 0, ())
    policy_class(policy)
    measurer = measurer or Measurer()
    tried: list[RankedPool] = []
    fluid = fluid or FluidCache(scenario)  # the winner's bound is then read, not solved again
    pools = iter(candidates(scenario, target_qps, "fluid", caps, single_type, fluid))
    while wave := list(islice(pools, WAVE)):
        winner = _try_wave(
            scenario, target_qps, policy, measurement, measurer, wave, tried, progress
        )
        if winner is not None:
            return _finish(
                scenario, target_qps, bound, policy, measurement, measurer, winner, tried, fluid
            )
        if len(tried) >= MAX_CANDIDATES:
            break
    raise _none_holds(scenario, target_qps, "simulated", len(tried))


def _try_wave(
    scenario: Scenario,
    target_qps: float,
    policy: str,
    measurement: Measurement,
    measurer: Measurer,
    wave: list[RankedPool],
    tried: list[RankedPool],
    progress: Callable[[RankedPool], None] | None,
) -> RankedPool | None:
    """One trial at the target per pool of ``wave``; the cheapest that passed, if any."""
    jobs = [CapacityJob(scenario, r.pool, policy, measurement, screen_qps=target_qps) for r in wave]
    results = measurer.run(jobs)
    winner = None
    for entry, res in zip(wave, results, strict=True):
        verdict = entry.verified(res.allowable_qps)
        tried.append(verdict)
        if progress is not None:
            progress(verdict)
        if winner is None and res.allowable_qps >= target_qps:
            winner = verdict
    return winner


def _finish(
    scenario: Scenario,
    target_qps: float,
    bound: str,
    policy: str,
    measurement: Measurement,
    measurer: Measurer,
    winner: RankedPool,
    tried: list[RankedPool],
    fluid: FluidCache,
) -> TargetPlan:
    (full,) = measurer.run([CapacityJob(scenario, winner.pool, policy, measurement)])
    # The search's passing rate sits within the precision below the pool's true limit, so it
    # may read a little under a target the pool held in its trial; report the larger.
    allowable = max(full.allowable_qps, target_qps)
    return _result(
        scenario, target_qps, bound, winner, allowable, policy, len(tried), tuple(tried), fluid
    )


def _result(
    scenario: Scenario,
    target_qps: float,
    bound: str,
    entry: RankedPool,
    allowable: float | None,
    policy: str | None,
    n_tried: int,
    tried: tuple[RankedPool, ...],
    cache: FluidCache | None = None,
) -> TargetPlan:
    pool = entry.pool
    if cache is None:
        fluid = float(_score(scenario, "fluid", [pool])[0])
    else:  # the same LP, most often solved already while the candidates were listed
        fluid = cache.exact(np.array([pool.count(t) for t in cache.types]))
    return TargetPlan(
        model=scenario.model,
        target_qps=float(target_qps),
        qos_ms=scenario.qos_ms,
        bound=bound,
        pool=pool,
        cost_per_hr=entry.cost_per_hr,
        # The fluid bound is an LP: solved once when it is also the named bound.
        upper_bound_qps=fluid if bound == "fluid" else float(_score(scenario, bound, [pool])[0]),
        fluid_bound_qps=fluid,
        allowable_qps=allowable,
        policy=policy,
        candidates_tried=n_tried,
        tried=tried,
    )


def _none_holds(scenario: Scenario, target_qps: float, how: str, n: int = 0) -> InfeasibleError:
    tried = f" ({n} pools tried)" if n else ""
    return InfeasibleError(
        f"no pool of the catalog holds {target_qps:g} q/s of {scenario.model!r} within QoS "
        f"{scenario.qos_ms:g} ms by the {how} test{tried}.",
        "lower --target-qps, raise --qos-ms, or lift the --max caps.",
    )
