"""Pools ranked by an upper bound: the top K of a catalog, and every pool in decreasing order of
the fluid bound (lazily, for the exact oracle).

Catalogs whose pools can be listed (``listed_pools``, up to ``MAX_POOLS``) are ranked from the
list; larger ones by a search that never lists them (``kairos_search.kairos_top`` for the
KAIROS bound, the MILP with no-good cuts for the fluid bound).

The fluid order (``FluidOrder``) costs one LP per pool only where it matters: every pool first
gets a cheap valid upper bound from fixed LP dual prices (``dual_bounds``, one dot product per
pool), pools are taken in decreasing order of that, and a pool's exact LP is solved when it
reaches the front; an exact value is released once it is at least every cheap bound left.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

import numpy as np

from kairos.allocator.choices import BOUNDS
from kairos.allocator.fluid import dual_bounds, fluid_lp, fluid_tables
from kairos.allocator.kairos_search import kairos_top
from kairos.allocator.milp import FluidProgram
from kairos.allocator.pools import COST_EPS, PoolMatrix, listed_pools, type_caps
from kairos.allocator.result import RankedPool
from kairos.scenario import Scenario


def score_pools(scenario: Scenario, pools: PoolMatrix, bound: str) -> np.ndarray:
    """The chosen upper bound (qps) of every pool."""
    return BOUNDS.get(bound).score(scenario, pools.types, pools.counts)


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


class FluidOrder:
    """Every pool of ``pools`` with a positive fluid bound, in decreasing order of it.

    Ties (equal bounds) come cheaper first. ``lps`` counts the LPs solved so far. Every
    ``REFRESH`` LPs, the duals of the best pool solved so far tighten the cheap bounds of the
    pools not yet solved (each set of dual prices gives a valid bound; the minimum is kept),
    so the front is reached with few LPs even when the first prices are poor.
    """

    REFRESH = 32

    def __init__(self, scenario: Scenario, pools: PoolMatrix) -> None:
        self.pools = pools
        self.tab = fluid_tables(scenario, pools.types)
        self.lps = 0
        # First prices: the catalog's own (a cost-efficiency bound).
        self.cheap = dual_bounds(self.tab, pools.counts, pools.prices_per_hr, 0.0)

    def _tighten(self, todo: np.ndarray, u: np.ndarray, mu: float) -> None:
        if u.any() and len(todo):
            fresh = dual_bounds(self.tab, self.pools.counts[todo], u, mu)
            self.cheap[todo] = np.minimum(self.cheap[todo], fresh)

    def _sorted(self, todo: np.ndarray) -> np.ndarray:
        keys = (todo, self.pools.cost_per_hr[todo], -self.cheap[todo])
        return todo[np.lexsort(keys)]

    def __iter__(self) -> Iterator[RankedPool]:
        ready: list[tuple[float, float, int]] = []  # (-exact, cost, index)
        order = self._sorted(np.flatnonzero(self.cheap > 0))
        pos = 0
        best_duals: tuple[float, np.ndarray, float] = (-1.0, np.zeros(0), 0.0)
        while True:
            next_cheap = float(self.cheap[order[pos]]) if pos < len(order) else -np.inf
            if ready and -ready[0][0] >= next_cheap:
                neg, cost, i = heapq.heappop(ready)
                if -neg <= 0:
                    return
                yield RankedPool(self.pools.pool(i), cost, -neg)
                continue
            if pos >= len(order):
                return
            i = int(order[pos])
            pos += 1
            value, u, mu = fluid_lp(self.tab, self.pools.counts[i])
            self.lps += 1
            if value > best_duals[0]:
                best_duals = (value, u, mu)
            heapq.heappush(ready, (-value, float(self.pools.cost_per_hr[i]), i))
            if self.lps % self.REFRESH == 0:
                rest = order[pos:]
                self._tighten(rest, best_duals[1], best_duals[2])
                order, pos = self._sorted(rest), 0


@dataclass(frozen=True)
class Ranking:
    """The top of a ranking and how many pools it looked at (0 when none was enumerated)."""

    ranked: list[RankedPool]
    pools_considered: int
    method: str  # "enumerated", "search" (KAIROS bound at scale) or "milp"


def top_pools(
    scenario: Scenario,
    budget_per_hr: float,
    bound: str,
    k: int,
    caps: Mapping[str, int] | None = None,
) -> Ranking:
    """The ``k`` pools with the highest ``bound`` (ties: cheaper first), at any catalog size."""
    BOUNDS.check(bound)
    pools = listed_pools(scenario, budget_per_hr, caps)
    if pools is None:
        return _top_at_scale(scenario, budget_per_hr, bound, k, caps)
    if bound == "fluid":
        out = []
        for entry in FluidOrder(scenario, pools):
            out.append(entry)
            if len(out) >= k:
                break
        return Ranking(out, len(pools), "enumerated")
    return Ranking(rank(pools, score_pools(scenario, pools, bound), k), len(pools), "enumerated")


def _top_at_scale(
    scenario: Scenario,
    budget_per_hr: float,
    bound: str,
    k: int,
    caps: Mapping[str, int] | None,
) -> Ranking:
    if bound == "fluid":
        program = FluidProgram(scenario, budget_per_hr, caps)
        out = []
        for entry in program.pools():
            out.append(entry)
            if len(out) >= k:
                break
        return Ranking(out, 0, "milp")
    return Ranking(kairos_top(scenario, budget_per_hr, k, caps), 0, "search")
