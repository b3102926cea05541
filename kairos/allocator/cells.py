"""Planning a celled service: N cells, each a pool one router serves, within one budget.

**How the budget is split.** Each cell gets ``budget / N``: the planner ranks pools for that
budget (the same ranking as ``plan``) and offers each of the top ``verify_top`` as a cell
repeated N times, the ``repeat`` candidates. Equal cells behind a capacity-weighted balancer
run at equal load, and no cell is a weak link whose tail fails the service first. The budget
is not split unevenly because the best pool for a budget grows almost linearly in it at
these sizes (a $2.5/h cell is a scale model of the $20/h pool), so an uneven split buys
nothing equal cells cannot, and costs a balancer that must know per-cell rates exactly.
The cells may still differ where that serves more: the ``split`` candidate is the best pool
for the whole budget cut into N cells by ``kairos.sim.cells.split_pool`` (cells within one
instance of each type of each other); it wins when the whole budget buys a pool that N
copies of a ``budget / N`` cell cannot (the rounding of N small pools loses up to a cheap
instance each).

**Which candidate.** Every candidate is simulated as the celled service it is (the front
splitter in front of N central queues, ``kairos.sim.celled``) and the one with the highest
allowable throughput is chosen (ties: cheaper, then the order above): the choice is the best
split tried by construction. Its fluid bound is the sum of its cells' fluid bounds: the
fluid LP of N separate pools is N separate LPs (no query may move between cells), so that
sum is an upper bound on any celled policy and is at most the fluid bound of the merged
pool.

**As many cells as a router carries** (``cells_for_max_rate``): with ``max_cell_qps`` R, the
cell count is the smallest N whose planned cell's fluid bound is at most R: a router then
never carries more than R at the service's allowable rate, whatever the split's efficiency.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kairos.allocator.feasible import budget_too_small
from kairos.allocator.fluid import fluid_bound
from kairos.allocator.pools import check_budget
from kairos.allocator.ranking import top_pools
from kairos.catalog import Pool
from kairos.distributor.base import policy_class
from kairos.errors import ConfigError
from kairos.scenario import Scenario
from kairos.sim.capacity import DEFAULT_MEASUREMENT, Measurement, measure
from kairos.sim.celled import DEFAULT_CELLS, SPLITTERS, celled_simulator, cut, merged


@dataclass(frozen=True)
class CellPlanDefaults:
    """Defaults of ``plan_cells`` (and of ``kairos plan --cells``), declared once."""

    bound: str = "kairos"
    verify_top: int = 3  # cells (per budget / N) offered as repeated cells and simulated
    policy: str = "kairos"  # each cell's router policy
    splitter: str = DEFAULT_CELLS.splitter
    max_cells: int = 256  # most cells --max-cell-qps may ask for


CELL_PLAN_DEFAULTS = CellPlanDefaults()


@dataclass(frozen=True)
class CellCandidate:
    """One way to cut the budget into cells, with its simulated celled throughput."""

    kind: str  # "repeat": one cell N times; "split": the whole-budget pool cut into N
    cells: tuple[Pool, ...]
    cost_per_hr: float
    fluid_bound_qps: float  # sum of the cells' fluid bounds
    allowable_qps: float  # simulated, the celled service behind the splitter

    @property
    def pool(self) -> Pool:
        return merged(self.cells)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "cells": [str(c) for c in self.cells],
            "pool": str(self.pool),
            "cost_per_hr": round(self.cost_per_hr, 6),
            "fluid_bound_qps": self.fluid_bound_qps,
            "allowable_qps": self.allowable_qps,
        }


@dataclass(frozen=True)
class CellPlan:
    model: str
    budget_per_hr: float
    qos_ms: float
    n_cells: int
    policy: str
    splitter: str
    chosen: CellCandidate
    tried: tuple[CellCandidate, ...]  # best first

    @property
    def best_tried_qps(self) -> float:
        return max(c.allowable_qps for c in self.tried)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "budget_per_hr": self.budget_per_hr,
            "qos_ms": self.qos_ms,
            "cells": self.n_cells,
            "policy": self.policy,
            "splitter": self.splitter,
            "pool": str(self.chosen.pool),
            "cell_pools": [str(c) for c in self.chosen.cells],
            "cost_per_hr": round(self.chosen.cost_per_hr, 6),
            "fluid_bound_qps": self.chosen.fluid_bound_qps,
            "allowable_qps": self.chosen.allowable_qps,
            "tried": [c.as_dict() for c in self.tried],
        }


def celled_allowable(
    scenario: Scenario,
    cells: tuple[Pool, ...],
    policy: str,
    measurement: Measurement,
    splitter: str,
) -> float:
    """Allowable throughput of ``cells`` behind ``splitter`` (one cell: the central queue)."""
    return measure(
        scenario,
        merged(cells),
        policy,
        measurement,
        simulator=celled_simulator(cells, splitter),
    ).allowable_qps


def _check_cells(n_cells: int) -> int:
    if isinstance(n_cells, bool) or not isinstance(n_cells, int) or n_cells < 1:
        raise ConfigError(
            f"cell count {n_cells!r} is not a whole number >= 1.",
            "pass --cells as a whole number of at least 1.",
        )
    return n_cells


def cell_candidates(
    scenario: Scenario, budget_per_hr: float, n_cells: int, bound: str, verify_top: int
) -> list[tuple[str, tuple[Pool, ...]]]:
    """The repeated cells for ``budget / N`` (best first by ``bound``), then the split of
    the best whole-budget pool; a candidate already offered is not offered twice."""
    out: list[tuple[str, tuple[Pool, ...]]] = []
    seen: set[tuple[Pool, ...]] = set()
    for r in top_pools(scenario, budget_per_hr / n_cells, bound, verify_top).ranked:
        cells = (r.pool,) * n_cells
        seen.add(cells)
        out.append(("repeat", cells))
    whole = top_pools(scenario, budget_per_hr, bound, 1).ranked
    if whole and whole[0].pool.size >= n_cells:
        cells = cut(scenario, whole[0].pool, n_cells)
        if cells not in seen:
            out.append(("split", cells))
    return out


def plan_cells(
    scenario: Scenario,
    budget_per_hr: float,
    n_cells: int,
    *,
    bound: str = CELL_PLAN_DEFAULTS.bound,
    verify_top: int = CELL_PLAN_DEFAULTS.verify_top,
    policy: str = CELL_PLAN_DEFAULTS.policy,
    splitter: str = CELL_PLAN_DEFAULTS.splitter,
    measurement: Measurement = DEFAULT_MEASUREMENT,
    progress: Callable[[CellCandidate], None] | None = None,
) -> CellPlan:
    """The celled service with the most allowable throughput within ``budget_per_hr``."""
    check_budget(budget_per_hr)
    _check_cells(n_cells)
    policy_class(policy)
    SPLITTERS.check(splitter)
    if not isinstance(verify_top, int) or verify_top < 1:
        raise ConfigError(
            f"--verify {verify_top!r} is out of range for a celled plan.",
            "pass --verify 1 or more: every cell candidate is simulated.",
        )
    offered = cell_candidates(scenario, budget_per_hr, n_cells, bound, verify_top)
    if not offered:
        raise budget_too_small(scenario, budget_per_hr / n_cells, bound)
    tried = []
    for kind, cells in offered:
        cand = CellCandidate(
            kind,
            cells,
            sum(c.cost_per_hr(scenario.prices) for c in cells),
            sum(fluid_bound(scenario, c) for c in cells),
            celled_allowable(scenario, cells, policy, measurement, splitter),
        )
        tried.append(cand)
        if progress is not None:
            progress(cand)
    order = sorted(
        range(len(tried)), key=lambda i: (-tried[i].allowable_qps, tried[i].cost_per_hr, i)
    )
    ranked = tuple(tried[i] for i in order)
    return CellPlan(
        scenario.model,
        float(budget_per_hr),
        scenario.qos_ms,
        n_cells,
        policy,
        splitter,
        ranked[0],
        ranked,
    )


def cells_for_max_rate(
    scenario: Scenario,
    budget_per_hr: float,
    max_cell_qps: float,
    bound: str = CELL_PLAN_DEFAULTS.bound,
    max_cells: int = CELL_PLAN_DEFAULTS.max_cells,
) -> int:
    """The fewest cells whose best ``budget / N`` cell has a fluid bound of at most
    ``max_cell_qps``: no router then carries more than that at the allowable rate."""
    check_budget(budget_per_hr)
    if not (isinstance(max_cell_qps, int | float) and math.isfinite(max_cell_qps)) or (
        max_cell_qps <= 0
    ):
        raise ConfigError(
            f"--max-cell-qps {max_cell_qps!r} is not a positive rate.",
            "pass the most queries per second one router should carry, e.g. 2000.",
        )
    whole = top_pools(scenario, budget_per_hr, bound, 1).ranked
    if not whole:
        raise budget_too_small(scenario, budget_per_hr, bound)
    # The fluid bound grows about linearly in the budget: start there, then step up.
    n = max(1, math.ceil(fluid_bound(scenario, whole[0].pool) / max_cell_qps))
    while n <= max_cells:
        cell = top_pools(scenario, budget_per_hr / n, bound, 1).ranked
        if not cell:
            break
        if fluid_bound(scenario, cell[0].pool) <= max_cell_qps:
            return n
        n += 1
    raise ConfigError(
        f"no cell count up to {max_cells} keeps each router at or under {max_cell_qps:g} q/s "
        f"within ${budget_per_hr:g}/h (a cell must still meet QoS on its share of the budget).",
        "raise --max-cell-qps, or lower --budget-per-hr.",
    )
