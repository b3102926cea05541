"""The ladder: the cheapest pool for each rate of a geometric grid, for one batch mix.

An autoscaler asks the target-rate planner (``cheapest_for_rate``) the same question every
tick with a slightly different rate. A planner call simulates a few pools (about a second of
CPU), far too slow to repeat each tick, so the answers are kept on a ladder: rung ``k`` is the
rate ``base_qps * step**k`` and holds the cheapest pool verified to hold it. A rate is served
by the rung at or above it, so a pool is at most ``step - 1`` above what the rate needs.

Rungs are filled on first use and cached by (mix, rung): a mix is planned once until it moves
(``Ladders``), and a rung is never planned twice. A rung is planned by ``cheapest_for_rate``
itself, through the ladder's measurer, with the fluid bounds kept across the ladder's rungs
(``FluidCache``): the bound is an LP per pool that does not depend on the rate, and re-solving
it for every pool below each rung's winner was most of a rung's CPU. The planner reports
the winner's allowable throughput, and a pool that holds the rate of a higher rung while
being cheapest for a lower one is the cheapest for the higher rung too (a pool that holds the
higher rate holds the lower one), so such rungs take the pool without a planner call: a
ladder needs one call per distinct pool, not per rung.

``choose`` picks, among the known pools that hold a rate and cost at most ``1 + margin`` times
the cheapest of them, the one closest to the pool rented now (fewest instances added and
removed): near-equal pools are not worth the churn of a move.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from kairos.allocator.fluid_cache import FluidCache
from kairos.allocator.target import (
    cheapest_for_rate,
)
from kairos.catalog import Pool, PriceTable
from kairos.control.headroom import total_variation
from kairos.errors import ConfigError, InfeasibleError
from kairos.limits import RATE_QPS
from kairos.scenario import Scenario
from kairos.sim.capacity import CapacityJob, Measurement, Measurer
from kairos.workload import BatchMix, QueryStream

# Batch-size bins (powers of two) on which two mixes are compared: a mix sampled from a few
# hundred queries spreads over a hundred sizes and differs from another sample of the same
# traffic by a large total variation at full resolution, but hardly at all per bin.
COARSE_EDGES = 2 ** np.arange(0, 31)


@dataclass(frozen=True)
class LadderSettings:
    """How the ladder is built; the kairos autoscaler and the hindsight baselines share it.

    ``step``: ratio between neighbouring rungs. Smaller rents closer to the rate (a pool is at
    most ``step - 1`` above need) but plans more rungs (one planner call per distinct pool).
    ``base_qps``: the lowest rung; rates below it are planned at it (the pool never empties).
    ``queries``/``precision``/``seed``: the planner's trials (``Measurement``): more queries
    judge a pool more surely and cost proportionally more CPU per rung.
    """

    step: float = 1.1
    base_qps: float = 1.0
    queries: int = 1000
    precision: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.step) and 1.0 < self.step <= 4.0):
            raise ConfigError(
                f"ladder step {self.step!r} is not in (1, 4].",
                "give a ratio between rungs such as 1.1 (pools at most 10% above need).",
            )
        RATE_QPS.check(self.base_qps, "the ladder's base rate")
        self.measurement()  # its own checks, at construction

    def measurement(self) -> Measurement:
        return Measurement(queries=self.queries, precision=self.precision, seed=self.seed)


@dataclass(frozen=True)
class Choice:
    """A pool verified to hold ``holds_qps`` (its allowable throughput, or the rate it passed)."""

    pool: Pool
    cost_per_hr: float
    holds_qps: float


def canonical(pool: Pool) -> Pool:
    """``pool`` with its types in name order: pools equal in counts compare equal."""
    return Pool(tuple(sorted(pool.counts)))


def pool_distance(a: Pool, b: Pool) -> int:
    """Instances added plus instances removed to turn ``a`` into ``b``."""
    types = set(a.types) | set(b.types)
    return sum(abs(a.count(t) - b.count(t)) for t in types)


def pool_union(a: Pool, b: Pool) -> Pool:
    """Per type, the larger count of the two pools (what holds both)."""
    types = sorted(set(a.types) | set(b.types))
    return Pool.of({t: max(a.count(t), b.count(t)) for t in types})


def choose(
    known: Iterable[Choice],
    rate_qps: float,
    current: Pool,
    prices: PriceTable,
    *,
    margin: float = 0.0,
    budget_per_hr: float | None = None,
    floor: Pool | None = None,
) -> Choice | None:
    """The pool to rent for ``rate_qps`` (see the module docstring); None if none fits.

    Each known pool is first raised to ``floor`` (per type). Over budget, the most capable
    pool within it is taken instead (highest rate held, then cheaper); None when not even
    the floor fits the budget.
    """
    options = []
    for c in known:
        pool = canonical(c.pool if floor is None else pool_union(c.pool, floor))
        options.append(Choice(pool, pool.cost_per_hr(prices), c.holds_qps))
    if budget_per_hr is not None:
        options = [c for c in options if c.cost_per_hr <= budget_per_hr * (1 + 1e-9)]
    holding = [c for c in options if c.holds_qps >= rate_qps]
    if not holding:
        return min(options, key=lambda c: (-c.holds_qps, c.cost_per_hr, str(c.pool)), default=None)
    cheapest = min(c.cost_per_hr for c in holding)
    near = [c for c in holding if c.cost_per_hr <= cheapest * (1 + margin) + 1e-12]
    return min(near, key=lambda c: (pool_distance(c.pool, current), c.cost_per_hr, str(c.pool)))


def coarse(mix: BatchMix) -> BatchMix:
    """``mix`` with its sizes binned by powers of two (for comparing, never for planning)."""
    bins = np.searchsorted(COARSE_EDGES, mix.support, side="left")
    probs = np.bincount(bins, weights=mix.probs, minlength=len(COARSE_EDGES))
    live = probs > 0
    return BatchMix(f"{mix.name}/coarse", COARSE_EDGES[live], probs[live] / probs[live].sum())


def mix_drift(a: BatchMix, b: BatchMix) -> float:
    """Total variation between the binned mixes (0: same shape, 1: disjoint)."""
    return total_variation(coarse(a), coarse(b))


def trace_mix(trace: QueryStream, name: str = "trace") -> BatchMix:
    """The batch-size mix of a whole trace (exact frequencies)."""
    support, counts = np.unique(trace.batch_size, return_counts=True)
    return BatchMix(name, support.astype(np.int64), counts / counts.sum())


def minute_rates_qps(trace: QueryStream) -> np.ndarray:
    """Arrivals per second in each minute ``[60 m, 60 (m + 1))`` from 0 to the last arrival."""
    if len(trace) == 0:
        return np.zeros(0)
    minutes = (np.asarray(trace.arrival_s) // 60.0).astype(np.int64)
    return np.bincount(minutes) / 60.0


class Ladder:
    """The rungs of one mix (see the module docstring). ``scenario.mix`` is the mix planned."""

    def __init__(
        self,
        scenario: Scenario,
        policy: str,
        settings: LadderSettings = LadderSettings(),
        measurer: Measurer | None = None,
    ) -> None:
        self.scenario = scenario
        self.policy = policy
        self.settings = settings
        self.measurer = measurer or Measurer()
        self._rungs: dict[int, Choice | None] = {}
        self._known: dict[Pool, Choice] = {}
        self._screens: dict[tuple[Pool, int], bool] = {}
        self.fluid = FluidCache(scenario)
        self.planner_calls = 0

    def bucket(self, rate_qps: float) -> int:
        """The lowest rung whose rate is at least ``rate_qps``."""
        s = self.settings
        if rate_qps <= s.base_qps:
            return 0
        return max(0, math.ceil(math.log(rate_qps / s.base_qps) / math.log(s.step) - 1e-9))

    def rate_of(self, k: int) -> float:
        return self.settings.base_qps * self.settings.step**k

    @property
    def known(self) -> tuple[Choice, ...]:
        """Every pool verified so far, with the highest rate it was seen to hold."""
        return tuple(self._known.values())

    def rungs(self) -> list[tuple[float, Choice | None]]:
        """Planned rungs, lowest first: (rate, cheapest pool; None where none holds it)."""
        return [(self.rate_of(k), self._rungs[k]) for k in sorted(self._rungs)]

    def rung(self, k: int) -> Choice | None:
        """The cheapest pool that holds rung ``k``'s rate (None if no pool of the catalog does)."""
        if k in self._rungs:
            return self._rungs[k]
        rate = self.rate_of(k)
        below = [j for j, c in self._rungs.items() if j < k and c is not None]
        covering = [j for j in below if self._rungs[j].holds_qps >= rate]  # type: ignore[union-attr]
        if covering:
            self._rungs[k] = self._rungs[max(covering)]
        elif any(j < k and c is None for j, c in self._rungs.items()):
            self._rungs[k] = None  # a lower rate already had no pool
        else:
            self._rungs[k] = self._plan(rate)
        self._keep_monotone(k)
        return self._rungs[k]

    def _plan(self, rate_qps: float) -> Choice | None:
        self.planner_calls += 1
        try:
            plan = cheapest_for_rate(
                self.scenario,
                rate_qps,
                policy=self.policy,
                measurement=self.settings.measurement(),
                measurer=self.measurer,
                fluid=self.fluid,
            )
        except InfeasibleError:
            return None
        # Pools tried that passed at this rate are near-equal alternatives for ``choose``
        # (each passed a trial at the rate, so each holds it).
        for entry in plan.tried:
            if entry.allowable_qps is not None and entry.allowable_qps >= rate_qps:
                self._remember(Choice(entry.pool, entry.cost_per_hr, rate_qps))
        winner = Choice(
            canonical(plan.pool), plan.cost_per_hr, float(plan.allowable_qps or rate_qps)
        )
        self._remember(winner)
        return winner

    def _remember(self, c: Choice) -> None:
        c = replace(c, pool=canonical(c.pool))
        old = self._known.get(c.pool)
        if old is None or c.holds_qps > old.holds_qps:
            self._known[c.pool] = c

    def _keep_monotone(self, k: int) -> None:
        """Trials are finite, so a higher rung may come out cheaper than a lower one; a pool
        that holds the higher rate holds the lower one, so the lower rung takes it."""
        new = self._rungs[k]
        if new is None:
            return
        for j, c in self._rungs.items():
            if j < k and c is not None and c.cost_per_hr > new.cost_per_hr:
                self._rungs[j] = new
            if j > k and c is not None and c.cost_per_hr < new.cost_per_hr:
                self._rungs[k] = new = c

    def ensure(self, rate_qps: float, budget_per_hr: float | None = None) -> Choice | None:
        """Plan the rung that serves ``rate_qps``; where it has no pool or costs more than the
        budget, plan lower rungs until one fits (so ``choose`` finds the best affordable)."""
        k = self.bucket(rate_qps)
        while k >= 0:
            c = self.rung(k)
            if c is not None and (budget_per_hr is None or c.cost_per_hr <= budget_per_hr):
                return c
            k -= 1
        return None

    def holds(self, pool: Pool, rate_qps: float) -> bool:
        """Whether ``pool`` holds ``rate_qps``: known, or one trial at the rung's rate (cached)."""
        if pool.size == 0:
            return False
        pool = canonical(pool)
        c = self._known.get(pool)
        if c is not None and c.holds_qps >= rate_qps:
            return True
        k = self.bucket(rate_qps)
        key = (pool, k)
        if key not in self._screens:
            job = CapacityJob(
                self.scenario,
                pool,
                self.policy,
                self.settings.measurement(),
                screen_qps=self.rate_of(k),
            )
            (res,) = self.measurer.run([job])
            self._screens[key] = res.allowable_qps >= self.rate_of(k)
            if self._screens[key]:
                cost = pool.cost_per_hr(self.scenario.prices)
                self._remember(Choice(pool, cost, self.rate_of(k)))
        return self._screens[key]


class Ladders:
    """One ladder per batch mix: a new mix is planned only when it moved more than
    ``drift_tv`` (``mix_drift``) from every mix planned before."""

    def __init__(
        self,
        scenario: Scenario,
        policy: str,
        settings: LadderSettings = LadderSettings(),
        drift_tv: float = 0.1,
    ) -> None:
        self.scenario = scenario
        self.policy = policy
        self.settings = settings
        self.drift_tv = drift_tv
        # One measurer for every ladder: its memo keys on the scenario object, which each
        # ladder keeps alive, so results never mix across mixes.
        self.measurer = Measurer()
        self._ladders: list[Ladder] = []
        self._current: Ladder | None = None

    @property
    def ladders(self) -> Sequence[Ladder]:
        return tuple(self._ladders)

    def for_mix(self, mix: BatchMix | None) -> Ladder:
        """The ladder planned on ``mix`` (the scenario's mix when None)."""
        mix = mix if mix is not None else self.scenario.mix
        if mix.max_batch > self.scenario.profiles.max_batch:
            mix = self.scenario.mix  # cannot be simulated; the trace's own check reports it
        cur = self._current
        if cur is not None and mix_drift(mix, cur.scenario.mix) <= self.drift_tv:
            return cur
        for ladder in self._ladders:
            if mix_drift(mix, ladder.scenario.mix) <= self.drift_tv:
                self._current = ladder
                return ladder
        ladder = Ladder(replace(self.scenario, mix=mix), self.policy, self.settings, self.measurer)
        self._ladders.append(ladder)
        self._current = ladder
        return ladder
