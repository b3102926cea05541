"""The named upper bounds the planner can rank pools by (a checked registry).

Each bound scores many pools at once (``score(scenario, types, counts) -> qps``) and says which
type sets can have a positive bound at all (``feasible_sets``), which is all the planner, the
oracle and the "budget too small" error need to know about it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kairos.allocator.bounds import kairos_bounds, kairos_feasible_sets
from kairos.allocator.fluid import fluid_bounds, fluid_feasible_sets
from kairos.registry import Registry
from kairos.scenario import Scenario

Scorer = Callable[[Scenario, tuple[str, ...], np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Bound:
    """An upper bound on allowable throughput. ``valid``: proven for every policy (the
    exact oracle may only prune with a valid bound); otherwise a heuristic."""

    name: str
    score: Scorer
    feasible_sets: Scorer
    valid: bool
    help: str


BOUNDS: Registry[Bound] = Registry("bound", "--bound")
BOUNDS.add(
    "kairos",
    Bound(
        "kairos",
        kairos_bounds,
        kairos_feasible_sets,
        valid=False,
        help="the paper's bound (a heuristic; docs/allocator.md)",
    ),
)
BOUNDS.add(
    "fluid",
    Bound(
        "fluid",
        fluid_bounds,
        fluid_feasible_sets,
        valid=True,
        help="the fluid LP, valid for every policy (and its MILP at scale)",
    ),
)


def check_bound(name: object) -> str:
    return BOUNDS.check(name)
