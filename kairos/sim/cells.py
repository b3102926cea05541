"""Cutting one pool into cells: the split, and each cell's capacity and balancer weight.

A cell is a heterogeneous pool that one router (one central queue) serves; a celled service is
N cells behind a load balancer (docs/cells.md). This module is pure arithmetic over instance
counts and per-instance rates, shared by the simulator's front splitter, the planner and the
live balancer's weights, so all three cut a pool the same way.

**How a pool is split** (``split_pool``). Every cell first gets ``n_t // cells`` instances of
each type ``t``: the cells hold the same mix of types, because the kairos policy earns its
throughput from heterogeneity (a cell without the type that serves big batches within QoS
loses them all), so composition is kept even before capacity. The remaining
``n_t % cells`` instances of each type are then placed one at a time, the fastest type first
(ties by name), each on the cell with the least capacity so far (ties to the lowest index)
among those that have not yet got one of this type's remainder: longest-processing-time-first
balancing under the rule that no two cells differ by more than one instance of any type. It
fills empty cells first (an empty cell has the least capacity), so every cell holds at least
one instance whenever ``cells <= instances``. The result is deterministic (it never depends
on the mappings' order) and preserves every count.

**Per-instance rate.** A type's rate is ``1000 / mean service time (ms)`` over the
workload's batch-size mix (``instance_rate_qps``): the same figure ``kairos.sim.capacity``
starts its search from. It weighs types against each other; it is not a QoS-aware capacity.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from kairos.errors import ConfigError, PoolError
from kairos.scenario import Scenario


def instance_rate_qps(scenario: Scenario, itype: str) -> float:
    """Queries per second one instance of ``itype`` completes, back to back, over the mix."""
    mix = scenario.mix
    mean_ms = float(np.dot(scenario.profiles.get(itype).mean_ms(mix.support), mix.probs))
    return 1000.0 / mean_ms


def instance_rates_qps(scenario: Scenario, types: Iterable[str]) -> dict[str, float]:
    """``instance_rate_qps`` of each type in ``types``: the rate table ``split_pool`` takes."""
    return {t: instance_rate_qps(scenario, t) for t in types}


def _checked_counts(pool: Mapping[str, int]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for itype, n in pool.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise PoolError(
                f"count {n!r} for instance type {itype!r} is not a whole number >= 0.",
                "give each type's count as a whole number >= 0.",
            )
        if n > 0:
            counts[itype] = n
    return counts


def _checked_rates(types: Iterable[str], rates: Mapping[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in types:
        if t not in rates:
            raise ConfigError(
                f"no per-instance rate for instance type {t!r}.",
                "pass a rate (qps) for every type of the pool, e.g. from instance_rates_qps.",
            )
        r = rates[t]
        if isinstance(r, bool) or not isinstance(r, int | float) or not math.isfinite(r) or r <= 0:
            raise ConfigError(
                f"per-instance rate {r!r} for instance type {t!r} is not a positive number.",
                "pass a positive, finite rate in qps for every type of the pool.",
            )
        out[t] = float(r)
    return out


def split_pool(
    pool: Mapping[str, int], cells: int, rate_per_instance_qps: Mapping[str, float]
) -> tuple[dict[str, int], ...]:
    """Split ``pool`` (type -> count) into ``cells`` cells, as evenly by capacity as the
    counts allow (the rule is in the module docstring).

    ``rate_per_instance_qps`` maps each type of the pool to one instance's rate (qps), for
    example ``instance_rates_qps(scenario, pool)``; only ratios between types matter. Each
    returned cell is a dict type -> count (types in the pool's order, zero counts left out);
    their counts add up to the pool's. Raises ``ConfigError`` when ``cells`` is not a whole
    number in ``[1, instances]``.
    """
    counts = _checked_counts(pool)
    total = sum(counts.values())
    if isinstance(cells, bool) or not isinstance(cells, int):
        raise ConfigError(
            f"cell count {cells!r} is not a whole number.",
            "pass --cells as a whole number >= 1.",
        )
    if cells < 1:
        raise ConfigError(
            f"cell count {cells} is below 1.",
            "pass --cells of at least 1 (1 is the single central queue).",
        )
    if cells > total:
        raise ConfigError(
            f"cell count {cells} exceeds the pool's {total} instances: a cell needs at least one.",
            f"pass --cells of at most {total}, or plan a larger pool.",
        )
    rates = _checked_rates(counts, rate_per_instance_qps)
    split = [{t: n // cells for t, n in counts.items()} for _ in range(cells)]
    capacity = [sum(n * rates[t] for t, n in cell.items()) for cell in split]
    # Fastest type first, then by name, so the order never depends on the mapping's order.
    for t in sorted(counts, key=lambda name: (-rates[name], name)):
        # At most one extra of each type per cell: cells keep the same mix within one.
        open_cells = list(range(cells))
        for _ in range(counts[t] % cells):
            k = min(open_cells, key=lambda c: (capacity[c], c))
            open_cells.remove(k)
            split[k][t] += 1
            capacity[k] += rates[t]
    return tuple({t: n for t, n in cell.items() if n > 0} for cell in split)


def cell_capacities_qps(
    cells: Iterable[Mapping[str, int]], rate_per_instance_qps: Mapping[str, float]
) -> tuple[float, ...]:
    """Each cell's capacity: the sum over its instances of their per-instance rate (qps)."""
    out = []
    for cell in cells:
        counts = _checked_counts(cell)
        rates = _checked_rates(counts, rate_per_instance_qps)
        out.append(sum(n * rates[t] for t, n in counts.items()))
    return tuple(out)


def cell_weights(
    cells: Iterable[Mapping[str, int]], rate_per_instance_qps: Mapping[str, float]
) -> tuple[float, ...]:
    """Each cell's share of the service's capacity (fractions adding up to 1): the weight a
    balancer gives it, so that every cell runs at the same load."""
    caps = cell_capacities_qps(cells, rate_per_instance_qps)
    total = sum(caps)
    if total <= 0:
        raise ConfigError(
            "the cells hold no instances, so they have no capacity to weigh.",
            "give at least one cell at least one instance.",
        )
    return tuple(c / total for c in caps)


def integer_weights(weights: Iterable[float], scale: int = 256) -> tuple[int, ...]:
    """``weights`` as whole numbers in ``[1, scale]`` proportional to them (HAProxy's server
    weights are integers in 1..256); every cell keeps a weight of at least 1."""
    ws = list(weights)
    top = max(ws) if ws else 0.0
    if top <= 0:
        raise ConfigError(
            f"weights {ws!r} have no positive entry.",
            "pass at least one positive weight.",
        )
    return tuple(max(1, round(scale * w / top)) for w in ws)
