"""Resource allocation: which pool of instance types to rent under a budget, without trying any.

Pipeline (each step a function of the last): ``pool_matrix``/``enumerate_pools`` -> a bound
per pool (``kairos_bound``: the paper's; ``fluid_bound``: an LP valid for every policy),
ranked (``top_pools``; a search or the MILP ``milp_top`` when the catalog is too large to
list) -> ``verify`` the top few by simulation. ``plan`` runs it; the baselines and the exact
oracle (``exact_oracle``, branch and bound over every pool) judge it. ``cheapest_for_rate``
asks the reverse question: the cheapest pool that holds a rate.
"""

from kairos.allocator.baselines import (
    best_homogeneous,
    best_of_top,
    ribbon_for_rate,
    ribbon_search,
)
from kairos.allocator.bounds import kairos_bound, kairos_bounds
from kairos.allocator.choices import BOUNDS, Bound
from kairos.allocator.feasible import budget_too_small, cheapest_feasible_pool
from kairos.allocator.fluid import fluid_bound, fluid_bounds
from kairos.allocator.milp import milp_top, solve_milp
from kairos.allocator.oracle import exact_oracle
from kairos.allocator.plan import PLAN_DEFAULTS, plan, verify
from kairos.allocator.pools import (
    PoolMatrix,
    count_pools,
    enumerate_pools,
    parse_caps,
    pool_matrix,
)
from kairos.allocator.ranking import rank, score_pools, top_pools
from kairos.allocator.result import Exploration, Plan, RankedPool, SearchResult
from kairos.allocator.target import TargetPlan, cheapest_for_rate

__all__ = [
    "BOUNDS",
    "PLAN_DEFAULTS",
    "Bound",
    "Exploration",
    "Plan",
    "PoolMatrix",
    "RankedPool",
    "SearchResult",
    "TargetPlan",
    "best_homogeneous",
    "best_of_top",
    "budget_too_small",
    "cheapest_for_rate",
    "cheapest_feasible_pool",
    "count_pools",
    "enumerate_pools",
    "exact_oracle",
    "fluid_bound",
    "fluid_bounds",
    "kairos_bound",
    "kairos_bounds",
    "milp_top",
    "parse_caps",
    "plan",
    "pool_matrix",
    "rank",
    "ribbon_for_rate",
    "ribbon_search",
    "score_pools",
    "solve_milp",
    "top_pools",
    "verify",
]
