"""Step 1 of planning: every pool whose hourly cost fits the budget, as one integer matrix.

Pools are rows of ``counts`` (shape ``[P, T]``, one column per catalog type). Enumeration
expands one type at a time and only keeps partial pools that still fit, so the work is
proportional to the number of feasible pools, never to the product of the per-type caps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from kairos.catalog import Pool, split_type_count
from kairos.errors import ConfigError, UnknownInstanceTypeError
from kairos.scenario import Scenario

# Above this many pools a catalog is ranked by a search (KAIROS bound) or the MILP (fluid
# bound) instead of a listing; the listing holds 4 bytes per type per pool (at most ~130 MB
# for 32 types) plus its cost vector.
MAX_POOLS = 1_000_000
# Prices are decimal dollars; sums of them carry float error that must not exclude a pool.
COST_EPS = 1e-9


@dataclass(frozen=True, eq=False)
class PoolMatrix:
    """Candidate pools: ``counts[i, t]`` instances of ``types[t]``; ``cost_per_hr[i]``."""

    types: tuple[str, ...]
    prices_per_hr: np.ndarray
    counts: np.ndarray
    cost_per_hr: np.ndarray

    def __len__(self) -> int:
        return int(self.counts.shape[0])

    def pool(self, i: int) -> Pool:
        return Pool.of([(t, int(n)) for t, n in zip(self.types, self.counts[i], strict=True)])

    def pools(self) -> list[Pool]:
        return [self.pool(i) for i in range(len(self))]


def check_budget(budget_per_hr: float) -> float:
    if (
        not isinstance(budget_per_hr, int | float)
        or not math.isfinite(budget_per_hr)
        or (budget_per_hr <= 0)
    ):
        raise ConfigError(
            f"budget {budget_per_hr!r} $/h is not a positive number.",
            "pass --budget-per-hr as dollars per hour greater than 0, for example 2.5.",
        )
    return float(budget_per_hr)


def catalog_types(scenario: Scenario) -> tuple[str, ...]:
    """Types with both a profile and a price; an empty catalog is an error."""
    types = scenario.instance_types
    if not types:
        raise UnknownInstanceTypeError(
            f"no instance type has both a profile for {scenario.model!r} (profiled: "
            f"{', '.join(scenario.profiles.instance_types) or 'none'}) and a price (priced: "
            f"{', '.join(scenario.prices.instance_types) or 'none'}).",
            "pass --prices with a row for each profiled type, or --profiles that measure the "
            "priced types.",
        )
    return types


def type_caps(
    scenario: Scenario, budget_per_hr: float, caps: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Per-type maximum count: what the budget alone allows, lowered by ``caps``."""
    types = catalog_types(scenario)
    budget = check_budget(budget_per_hr)
    out = {t: int(math.floor(budget / scenario.prices.price_per_hr(t) + COST_EPS)) for t in types}
    for t, n in (caps or {}).items():
        if t not in out:
            raise UnknownInstanceTypeError(
                f"--max names instance type {t!r}, which is not in the catalog (known: "
                f"{', '.join(types)}).",
                "use a type that has both a profile and a price, e.g. --max r5n.large=17.",
            )
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(
                f"cap {n!r} for {t!r} is not a whole number >= 0.",
                "write caps as --max TYPE=N with N >= 0.",
            )
        out[t] = min(out[t], n)
    return out


def parse_caps(items: tuple[str, ...] | list[str]) -> dict[str, int]:
    """``["TYPE=N", ...]`` -> ``{TYPE: N}`` (types are checked later against the catalog)."""
    caps: dict[str, int] = {}
    for item in items:
        pair = split_type_count(item)
        if pair is None:
            raise ConfigError(
                f"--max {item!r} is not TYPE=N with N a whole number >= 0.",
                "write caps like --max g4dn.xlarge=5 --max r5n.large=17.",
            )
        caps[pair[0]] = pair[1]
    return caps


def pool_matrix(
    scenario: Scenario, budget_per_hr: float, caps: Mapping[str, int] | None = None
) -> PoolMatrix:
    """Every non-empty pool within ``budget_per_hr`` and ``caps`` (vectorised enumeration)."""
    pools = listed_pools(scenario, budget_per_hr, caps)
    if pools is None:
        raise ConfigError(
            f"budget ${budget_per_hr:g}/h admits more than {MAX_POOLS:,} pools over "
            f"{len(catalog_types(scenario))} types; listing them is not practical.",
            "plan ranks such catalogs by a search instead; to list them, cap types with "
            "--max TYPE=N.",
        )
    return pools


def listed_pools(
    scenario: Scenario, budget_per_hr: float, caps: Mapping[str, int] | None = None
) -> PoolMatrix | None:
    """``pool_matrix``, or None when there are more than ``MAX_POOLS`` pools to list."""
    limits = type_caps(scenario, budget_per_hr, caps)
    types = tuple(limits)
    prices = np.array([scenario.prices.price_per_hr(t) for t in types])
    budget = float(budget_per_hr) + COST_EPS
    counts = np.zeros((1, 0), dtype=np.int32)
    spent = np.zeros(1)
    for col, t in enumerate(types):
        room = np.floor((budget - spent) / prices[col] + COST_EPS).astype(np.int64)
        n_max = np.minimum(np.maximum(room, 0), limits[t])
        reps = n_max + 1
        total = int(reps.sum())
        if total > MAX_POOLS:
            return None
        parent = np.repeat(np.arange(len(counts)), reps)
        starts = np.cumsum(reps) - reps
        new = np.arange(total) - np.repeat(starts, reps)
        counts = np.column_stack([counts[parent], new.astype(np.int32)])
        spent = spent[parent] + new * prices[col]
    keep = counts.sum(axis=1) > 0
    return PoolMatrix(types, prices, counts[keep], spent[keep])


def enumerate_pools(
    scenario: Scenario, budget_per_hr: float, caps: Mapping[str, int] | None = None
) -> list[Pool]:
    """Every non-empty pool whose hourly cost is at most ``budget_per_hr``."""
    return pool_matrix(scenario, budget_per_hr, caps).pools()


# Pool counting works in units of this many dollars per hour (prices are given to 4 decimals).
COUNT_UNIT = 1e-4


def count_pools(
    scenario: Scenario, budget_per_hr: float, caps: Mapping[str, int] | None = None
) -> float:
    """How many non-empty pools fit the budget and caps, without listing them.

    Exact (the enumeration's own count) up to ``MAX_POOLS``; above it a dynamic programme over
    the budget in units of $0.0001/h (a float: the count can pass 2**53).
    """
    listed = listed_pools(scenario, budget_per_hr, caps)
    if listed is not None:
        return float(len(listed))
    limits = type_caps(scenario, budget_per_hr, caps)
    units = int(math.floor(budget_per_hr / COUNT_UNIT + 1e-6))
    ways = np.zeros(units + 1)
    ways[0] = 1.0
    for t, cap in limits.items():
        step = max(1, int(round(scenario.prices.price_per_hr(t) / COUNT_UNIT)))
        # new[c] = sum_{k=0..cap} old[c - k*step]: a running sum along each residue class.
        new = np.zeros_like(ways)
        for r in range(min(step, units + 1)):
            lane = ways[r::step]
            run = np.cumsum(lane)
            if cap + 1 < len(run):
                run[cap + 1 :] -= run[: len(run) - cap - 1].copy()
            new[r::step] = run
        ways = new
    return float(ways.sum() - 1.0)
