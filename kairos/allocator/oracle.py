"""The exact oracle: the pool with the highest simulated allowable throughput among *all*
pools within budget, found by branch and bound instead of simulating them all.

Pools are taken in decreasing order of the fluid bound, which is valid for every policy (no
pool can sustain more than its bound), and simulated; the search stops as soon as the next
pool's bound is below the best allowable throughput found, since no pool after it can beat
that. The result is the best pool of the whole budget with respect to the simulator at the
given measurement (seed, precision), together with how many pools that took.

Order: for catalogs whose pools can be listed, ``ranking.FluidOrder`` (cheap dual bounds first,
an exact LP only near the front); beyond that, the fluid MILP with no-good cuts
(``milp.FluidProgram``), one solve per pool.

Screening: to know whether a pool can beat the best rate ``B`` found so far, one trial is
enough: if it fails at ``B / (1 + precision)``, the pool's allowable throughput is below
``B`` (pass/fail is monotone in the rate up to the search's precision, and the step below
``B`` absorbs that: a pool within the precision of the best is searched in full) and nothing
more is simulated; only pools that pass are searched in full. Most candidates fail, and a
failing trial stops as soon as it has failed, so the exact search costs little more than the
pools it fully measures. "Exact" means exact with respect to the simulator at the given
measurement: two pools within its precision of each other are a tie.

Seeds: pools the caller has already searched in full under the same policy and measurement
(``seeds``; in ``kairos compare`` the pools the ``kairos`` schemes measured) are searched
first, before the walk, and the walk skips them. The measurer remembers their results, so they
cost nothing, and the best of them is the floor from the first wave on: without it the first
wave is searched in full (there is no floor to screen against yet). Seeds change which pools
are simulated, never which pool can be best: every pool not seeded is still screened against
the floor or cut by its bound, exactly as without seeds.

Pools are handled in waves of ``wave`` (in parallel when the measurer's executor has
workers); the wave size, not the number of workers, decides which pools are simulated and
at which screening rate, so a parallel run reports exactly what a serial run does.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kairos.allocator.feasible import budget_too_small
from kairos.allocator.fluid import fluid_bound, fluid_lp, fluid_tables
from kairos.allocator.milp import FluidProgram, milp_top
from kairos.allocator.plan import screen_then_search
from kairos.allocator.pools import COST_EPS, count_pools, listed_pools
from kairos.allocator.ranking import FluidOrder, pools_above
from kairos.allocator.result import Exploration, RankedPool, SearchResult
from kairos.catalog import Pool
from kairos.distributor.base import policy_class
from kairos.errors import ConfigError
from kairos.scenario import Scenario
from kairos.sim.capacity import DEFAULT_MEASUREMENT, CapacityJob, Measurement, Measurer, measure_all


@dataclass(frozen=True)
class OracleDefaults:
    """Defaults of the exact oracle, declared once.

    ``wave``: pools simulated per round (a round may simulate up to ``wave - 1`` pools a
    one-at-a-time search would have skipped; fixed so results do not depend on ``--jobs``).
    ``max_simulations``: a safety cap; a search stopped by it reports ``exact=False``.
    ``lookahead``: waves whose screens are run at once (this one and the ones after it as
    they will be if this one finds no better pool); changes the work done, never the answer.
    """

    policy: str = "kairos"
    wave: int = 4
    max_simulations: int = 2000
    lookahead: int = 3


ORACLE_DEFAULTS = OracleDefaults()


def pools_by_fluid_bound(
    scenario: Scenario,
    budget_per_hr: float,
    caps: Mapping[str, int] | None = None,
    floor: tuple[float, np.ndarray, float] | None = None,
) -> Iterator[RankedPool]:
    """Every pool within budget with a positive fluid bound, best bound first (lazily).

    ``floor = (qps, u, mu)``: only pools whose bound can reach ``qps`` are needed (those
    below cannot matter to the caller); when the budget admits too many pools to list, the
    ones that can reach it are listed with the dual prices ``u, mu`` (``pools_above``), and
    only if even those are too many does the order come from the MILP, one solve per pool.
    """
    pools = listed_pools(scenario, budget_per_hr, caps)
    if pools is None and floor is not None:
        pools = pools_above(scenario, budget_per_hr, floor[0], caps, (floor[1], floor[2]))
    if pools is None:
        yield from FluidProgram(scenario, budget_per_hr, caps).pools()
    else:
        yield from FluidOrder(scenario, pools)


def _incumbent(
    scenario: Scenario,
    budget_per_hr: float,
    caps: Mapping[str, int] | None,
    policy: str,
    measurement: Measurement,
    measurer: Measurer,
) -> tuple[float, np.ndarray, float] | None:
    """For a catalog too large to list: the fluid MILP's best pool, simulated, as a floor
    (its allowable throughput) and its LP's dual prices; None when the catalog is listable."""
    if listed_pools(scenario, budget_per_hr, caps) is not None:
        return None
    (top,) = milp_top(scenario, budget_per_hr, 1, caps)
    qps = measure_all([CapacityJob(scenario, top.pool, policy, measurement)], measurer)[0]
    tab = fluid_tables(scenario, scenario.instance_types)
    counts = np.array([top.pool.count(t) for t in scenario.instance_types])
    _, u, mu = fluid_lp(tab, counts)
    return qps.allowable_qps, u, mu


def exact_oracle(
    scenario: Scenario,
    budget_per_hr: float,
    *,
    policy: str = ORACLE_DEFAULTS.policy,
    measurement: Measurement = DEFAULT_MEASUREMENT,
    caps: Mapping[str, int] | None = None,
    measurer: Measurer | None = None,
    wave: int = ORACLE_DEFAULTS.wave,
    max_simulations: int = ORACLE_DEFAULTS.max_simulations,
    progress: Callable[[Exploration], None] | None = None,
    lookahead: int = ORACLE_DEFAULTS.lookahead,
    seeds: Sequence[Pool] = (),
) -> SearchResult:
    """Branch and bound over every pool within budget (see the module docstring); ``seeds``:
    pools searched first (best case: the measurer already holds their full searches)."""
    policy_class(policy)
    if not isinstance(wave, int) or wave < 1 or max_simulations < 1 or lookahead < 1:
        raise ConfigError(
            f"oracle wave {wave!r} / max_simulations {max_simulations!r} / lookahead "
            f"{lookahead!r} is not >= 1.",
            "pass positive whole numbers.",
        )
    measurer = measurer or Measurer()
    incumbent = _incumbent(scenario, budget_per_hr, caps, policy, measurement, measurer)
    order = pools_by_fluid_bound(scenario, budget_per_hr, caps, incumbent)
    history = _seeded(scenario, budget_per_hr, caps, policy, measurement, measurer, seeds)
    seeded = {e.pool for e in history}
    best: Exploration | None = None
    for done in history:
        if progress is not None:
            progress(done)
        if _beats(done, best):
            best = done
    if best is not None and best.allowable_qps <= 0:
        best = None  # no floor: a seed that never meets QoS cannot be the answer
    searched = len(history)
    ahead = _Ahead(order, 2 * wave * lookahead, seeded)
    try:
        if ahead.peek(0) is None and best is None:
            raise budget_too_small(scenario, budget_per_hr, "fluid", caps)
        while (head := ahead.peek(0)) is not None and (
            best is None or head.upper_bound_qps >= best.allowable_qps
        ):
            if len(history) >= max_simulations:
                break
            floor = best.allowable_qps if best is not None else 0.0
            sizes = _waves(ahead, floor, wave, max_simulations - len(history), lookahead)
            batch = ahead.take(sizes[0])
            # The waves after this one, as they will be if this one finds no better pool
            # (the usual case): screened now, so the workers never wait on a short wave.
            # A pool that does beat the floor changes the next floor, and those screens
            # are wasted work, never a different answer (the next wave asks its own).
            spec = [ahead.peek(i) for i in range(sum(sizes[1:]))]
            extra = [r for r in spec if r is not None] if floor > 0 else []
            results = screen_then_search(
                scenario,
                [r.pool for r in batch],
                policy,
                measurement,
                measurer,
                floor,
                [r.pool for r in extra],
            )
            for entry, (qps, full) in zip(batch, results, strict=True):
                done = Exploration(entry.pool, entry.cost_per_hr, qps, entry.upper_bound_qps, full)
                searched += full
                history.append(done)
                if progress is not None:
                    progress(done)
                if full and _beats(done, best):
                    best = done
        pending = ahead.peek(0)
    finally:
        ahead.close()
    if best is None:
        raise budget_too_small(scenario, budget_per_hr, "fluid", caps)
    exact = pending is None or pending.upper_bound_qps < best.allowable_qps
    return SearchResult(
        "oracle",
        policy,
        best.pool,
        best.cost_per_hr,
        best.allowable_qps,
        len(history),
        tuple(history),
        pools_within_budget=count_pools(scenario, budget_per_hr, caps),
        exact=exact,
        searched=searched,
    )


def _beats(done: Exploration, best: Exploration | None) -> bool:
    """Whether ``done`` is the new best: a higher allowable rate, or the same for less."""
    return best is None or (done.allowable_qps, -done.cost_per_hr) > (
        best.allowable_qps,
        -best.cost_per_hr,
    )


def _seeded(
    scenario: Scenario,
    budget_per_hr: float,
    caps: Mapping[str, int] | None,
    policy: str,
    measurement: Measurement,
    measurer: Measurer,
    seeds: Sequence[Pool],
) -> list[Exploration]:
    """The seeds within budget and caps (each once, in the given order), searched in full."""
    limit = budget_per_hr + COST_EPS
    pools: list[Pool] = []
    for pool in seeds:
        fits = pool.cost_per_hr(scenario.prices) <= limit and all(
            caps is None or t not in caps or n <= caps[t] for t, n in pool.counts
        )
        if fits and pool not in pools:
            pools.append(pool)
    jobs = [CapacityJob(scenario, p, policy, measurement) for p in pools]
    return [
        Exploration(
            p, p.cost_per_hr(scenario.prices), r.allowable_qps, fluid_bound(scenario, p), True
        )
        for p, r in zip(pools, measure_all(jobs, measurer), strict=True)
    ]


def _waves(ahead: _Ahead, floor: float, wave: int, room: int, count: int) -> list[int]:
    """Sizes of the next ``count`` waves at ``floor``: each takes up to ``wave`` pools (first
    always; then while their bound reaches the floor), within ``room`` simulations left."""
    sizes: list[int] = []
    pos = 0
    while len(sizes) < count and room > 0 and ahead.peek(pos) is not None:
        if sizes and (entry := ahead.peek(pos)) is not None and entry.upper_bound_qps < floor:
            break  # the next wave would not start: its head cannot beat the floor
        size = 1
        while size < min(wave, room):
            entry = ahead.peek(pos + size)
            if entry is None or entry.upper_bound_qps < floor:
                break
            size += 1
        sizes.append(size)
        pos += size
        room -= size
    return sizes


class _Ahead:
    """The fluid order with look-ahead; a thread computes the next pools (their LPs) while
    the workers simulate, so the main process is not the one thing the workers wait on."""

    def __init__(self, order: Iterator[RankedPool], depth: int, skip: set[Pool]) -> None:
        # Pools in ``skip`` (already searched in full) are left out of the order.
        self._order = (e for e in order if e.pool not in skip)
        self._buf: deque[RankedPool] = deque()
        # Bounded: pools computed past the cut are wasted LPs.
        self._queue: queue.Queue[tuple[RankedPool | None, BaseException | None]] = queue.Queue(
            depth
        )
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._fill, name="oracle-order", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            for entry in self._order:
                while not self._stop.is_set():
                    try:
                        self._queue.put((entry, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._queue.put((None, None))
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            self._queue.put((None, err))

    def peek(self, i: int) -> RankedPool | None:
        """The ``i``-th next pool (0: the next), or None past the end."""
        while len(self._buf) <= i and not self._done:
            entry, err = self._queue.get()
            if err is not None:
                raise err
            if entry is None:
                self._done = True
            else:
                self._buf.append(entry)
        return self._buf[i] if i < len(self._buf) else None

    def take(self, n: int) -> list[RankedPool]:
        self.peek(n - 1)
        return [self._buf.popleft() for _ in range(min(n, len(self._buf)))]

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
        self._thread.join()
