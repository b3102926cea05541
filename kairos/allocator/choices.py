"""The named upper bounds the planner can rank pools by (a checked registry).

Each bound scores many pools at once (``score(scenario, types, counts) -> qps``) and says which
type sets can have a positive bound at all (``feasible_sets``), which is all the planner, the
oracle and the "budget too small" error need to know about it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from kairos.allocator.bounds import kairos_bounds, kairos_feasible_sets
from kairos.allocator.fluid import fluid_bounds, fluid_feasible_sets
from kairos.registry import Registry
from kairos.scenario import Scenario

Scorer = Callable[[Scenario, tuple[str, ...], np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Bound:
    """An upper bound on allowable throughput. ``valid``: proven for every policy (the
    exact oracle may only prune with a valid bound); otherwise a heuristic. ``lp_tail``:
    None for a closed-form bound, else the fluid LP's ``tail`` variant it is (large catalogs
    are ranked by its lazy order or its MILP)."""

    name: str
    score: Scorer
    feasible_sets: Scorer
    valid: bool
    help: str
    lp_tail: bool | None = None


BOUNDS: Registry[Bound] = Registry("bound", "pass --bound with one of the known names.")
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
        lp_tail=False,
    ),
)
BOUNDS.add(
    "tail",
    Bound(
        "tail",
        partial(fluid_bounds, tail=True),
        partial(fluid_feasible_sets, tail=True),
        valid=False,
        help="the fluid LP counting on a type only for classes it serves within QoS at p99",
        lp_tail=True,
    ),
)


def check_bound(name: object) -> str:
    return BOUNDS.check(name)
