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
from kairos.allocator.fluid import FluidTables, dual_bounds, fluid_lp, fluid_tables
from kairos.allocator.kairos_search import kairos_top
from kairos.allocator.milp import FluidProgram
from kairos.allocator.pools import COST_EPS, MAX_POOLS, PoolMatrix, listed_pools, type_caps
from kairos.allocator.result import RankedPool
from kairos.scenario import MISS_BUDGET, Scenario


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

    Ties (equal bounds) come cheaper first. ``lps`` counts the LPs solved so far. After
    ``REFRESH`` LPs, then after twice as many, and so on, the duals of the best pool solved so
    far tighten the cheap bounds of the pools not yet solved (each set of dual prices gives a
    valid bound; the minimum is kept), so the front is reached with few LPs even when the
    first prices are poor.
    """

    REFRESH = 32

    def __init__(self, scenario: Scenario, pools: PoolMatrix, tail: bool = False) -> None:
        self.pools = pools
        self.tab = fluid_tables(scenario, pools.types, tail)
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
        next_refresh = self.REFRESH
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
            if self.lps >= next_refresh:
                # Doubling intervals: a few re-sorts even when millions of pools are listed.
                next_refresh *= 2
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
    lp_tail = BOUNDS.get(bound).lp_tail
    if lp_tail is not None:
        out = []
        for entry in FluidOrder(scenario, pools, lp_tail):
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
    lp_tail = BOUNDS.get(bound).lp_tail
    if lp_tail is not None:
        program = FluidProgram(scenario, budget_per_hr, caps, tail=lp_tail)
        out = []
        for entry in program.pools():
            out.append(entry)
            if len(out) >= k:
                break
        return Ranking(out, 0, "milp")
    return Ranking(kairos_top(scenario, budget_per_hr, k, caps), 0, "search")


def pools_above(
    scenario: Scenario,
    budget_per_hr: float,
    floor_qps: float,
    caps: Mapping[str, int] | None = None,
    duals: tuple[np.ndarray, float] | None = None,
) -> PoolMatrix | None:
    """Every pool whose fluid bound can reach ``floor_qps``, without listing the others.

    The listing adds one type at a time (as ``listed_pools``) and drops a partial pool as soon
    as no completion of it can reach the floor by a dual bound (``dual_bounds``): with prices
    ``u, mu`` a completion's bound is at most [the fixed counts' ``sum u n`` plus the most
    ``sum u n`` the remaining budget buys among the remaining types (a fractional knapsack)]
    over the denominator of the largest type set it could end with. Exact: every pool whose
    fluid bound is at least ``floor_qps`` is kept. None when more than ``MAX_POOLS`` remain.
    """
    limits = type_caps(scenario, budget_per_hr, caps)
    types = tuple(limits)
    tab = fluid_tables(scenario, types)
    prices = np.array([scenario.prices.price_per_hr(t) for t in types])
    u, mu = duals if duals is not None else (prices, 0.0)
    cap = np.array([limits[t] for t in types], dtype=np.int64)
    budget = float(budget_per_hr) + COST_EPS
    counts = np.zeros((1, 0), dtype=np.int32)
    spent = np.zeros(1)
    value = np.zeros(1)  # sum of u n over the types fixed so far
    for col in range(len(types)):
        room = np.floor((budget - spent) / prices[col] + COST_EPS).astype(np.int64)
        reps = np.minimum(np.maximum(room, 0), cap[col]) + 1
        parent = np.repeat(np.arange(len(counts)), reps)
        new = np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps)
        counts = np.column_stack([counts[parent], new.astype(np.int32)])
        spent = spent[parent] + new * prices[col]
        value = value[parent] + new * u[col]
        rest = np.arange(col + 1, len(types))
        gain = value + _knapsack(budget - spent, u[rest], prices[rest], cap[rest])
        denom = _largest_set_denominator(tab, counts, rest[cap[rest] > 0], u, mu)
        with np.errstate(divide="ignore", invalid="ignore"):
            reach = np.where(denom > 0, gain / denom, np.inf)
        keep = reach >= floor_qps * (1 - 1e-9)
        counts, spent, value = counts[keep], spent[keep], value[keep]
        if len(counts) > MAX_POOLS:
            return None
    nonempty = counts.sum(axis=1) > 0
    return PoolMatrix(types, prices, counts[nonempty], spent[nonempty])


def _knapsack(
    room: np.ndarray, value: np.ndarray, price: np.ndarray, cap: np.ndarray
) -> np.ndarray:
    """Most ``sum value x`` with ``sum price x <= room`` and ``0 <= x <= cap`` (fractional)."""
    if len(value) == 0:
        return np.zeros(len(room))
    order = np.argsort(-value / price, kind="stable")
    cost = np.concatenate([[0.0], np.cumsum(price[order] * cap[order])])
    gain = np.concatenate([[0.0], np.cumsum(value[order] * cap[order])])
    k = np.clip(np.searchsorted(cost, np.maximum(room, 0.0), side="right") - 1, 0, len(order))
    ratio = np.concatenate([value[order] / price[order], [0.0]])
    return gain[k] + (np.maximum(room, 0.0) - cost[k]) * ratio[k]


def _largest_set_denominator(
    tab: FluidTables, counts: np.ndarray, rest: np.ndarray, u: np.ndarray, mu: float
) -> np.ndarray:
    """The dual denominator of each partial pool's types plus every type in ``rest``."""
    price = u[:, None] * tab.mean_s + mu * tab.miss  # [T, J]
    rest_min = price[rest].min(axis=0) if len(rest) else np.full(price.shape[1], np.inf)
    present = counts > 0
    weights = 1 << np.arange(present.shape[1], dtype=np.int64)
    pattern = present.astype(np.int64) @ weights
    uniq, inverse = np.unique(pattern, return_inverse=True)
    out = np.empty(len(uniq))
    for k, pat in enumerate(uniq.tolist()):
        members = [t for t in range(present.shape[1]) if pat >> t & 1]
        w = np.minimum(price[members].min(axis=0), rest_min) if members else rest_min
        out[k] = (
            float(np.where(np.isfinite(w), w, 0.0) @ tab.probs) if np.isfinite(w).all() else 0.0
        )
    return (out - MISS_BUDGET * mu)[inverse.reshape(-1)]
