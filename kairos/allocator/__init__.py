"""Resource allocation: which pool of instance types to rent under a budget, without trying any.

Pipeline (each step a function of the last): ``pool_matrix``/``enumerate_pools`` -> a bound
per pool (``kairos_bound``: the paper's; ``fluid_bound``: an exact LP) -> optionally the MILP
``solve_milp`` -> ``verify`` by simulation. ``plan`` runs it; the baselines judge it.
"""

from kairos.allocator.baselines import (
    Exploration,
    SearchResult,
    best_homogeneous,
    oracle_search,
    ribbon_search,
)
from kairos.allocator.bounds import kairos_bound, kairos_bounds
from kairos.allocator.fluid import fluid_bound, fluid_bounds, solve_milp
from kairos.allocator.plan import (
    BOUNDS,
    budget_too_small,
    cheapest_feasible_pool,
    plan,
    rank,
    score_pools,
    verify,
)
from kairos.allocator.pools import PoolMatrix, enumerate_pools, parse_caps, pool_matrix
from kairos.allocator.result import Plan, RankedPool
from kairos.allocator.synthetic import synthetic_scenario

__all__ = [
    "BOUNDS",
    "Exploration",
    "Plan",
    "PoolMatrix",
    "RankedPool",
    "SearchResult",
    "best_homogeneous",
    "budget_too_small",
    "cheapest_feasible_pool",
    "enumerate_pools",
    "fluid_bound",
    "fluid_bounds",
    "kairos_bound",
    "kairos_bounds",
    "oracle_search",
    "parse_caps",
    "plan",
    "pool_matrix",
    "rank",
    "ribbon_search",
    "score_pools",
    "solve_milp",
    "synthetic_scenario",
    "verify",
]
