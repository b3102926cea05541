"""Which pools can meet QoS at all, the cheapest one that can, and the error for a budget
below it.

Whether a pool's bound is positive depends only on which types it holds (not on how many),
so these questions are answered over type sets, never over pools.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from kairos.allocator.choices import BOUNDS
from kairos.allocator.pools import catalog_types
from kairos.catalog import Pool
from kairos.errors import InfeasibleError
from kairos.scenario import Scenario

# Type sets are searched exhaustively over at most this many (the cheapest) types, in chunks
# of SET_CHUNK sets so memory stays bounded (the fluid test holds [sets, types, classes]).
MAX_SUBSET_TYPES = 16
SET_CHUNK = 2048


def type_set_bits(n_types: int) -> np.ndarray:
    """``[2**T, T]`` bool: row ``s`` holds type ``t`` iff bit ``t`` of ``s`` is set."""
    return ((np.arange(1 << n_types)[:, None] >> np.arange(n_types)[None, :]) & 1).astype(bool)


def feasible_type_sets(scenario: Scenario, types: tuple[str, ...], bound: str) -> np.ndarray:
    """``[2**T]`` bool: can a pool with exactly this set of types (bit t = types[t]) meet QoS?

    Whether a pool's bound is positive depends only on which types it holds (see each
    bound's ``feasible_sets``).
    """
    bits = type_set_bits(len(types))
    test = BOUNDS.get(bound).feasible_sets
    return np.concatenate(
        [test(scenario, types, bits[i : i + SET_CHUNK]) for i in range(0, len(bits), SET_CHUNK)]
    )


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
    bits = type_set_bits(len(types))
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
