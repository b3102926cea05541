"""Step 3 of planning (beyond the paper): the exact fluid bound and the MILP pool optimiser.

The fluid bound treats each batch size of the mix as a class ``j`` (probability ``p_j``) and
asks for the largest arrival rate ``lam`` whose classes can be split across the pool's types
without overloading any type. QoS enters through the service-time *distribution*: a query of
class j served on type t misses QoS even with no queueing with probability
``miss_tj = P(S_tj > QoS)``, and at most 1% of all queries may miss (the p99 target). Using the
whole distribution, rather than declaring a class forbidden on a type by its mean or by one
tail quantile, keeps the program a relaxation of every policy: any schedule that meets the
p99 target obeys these constraints in the long run, so ``lam*`` is an upper bound on the
allowable throughput whatever the distribution policy (see docs/allocator.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from kairos.allocator.pools import catalog_types, type_caps
from kairos.allocator.result import Plan, RankedPool
from kairos.catalog import Pool
from kairos.errors import InfeasibleError, KairosError
from kairos.scenario import Scenario
from kairos.sim.capacity import QOS_QUANTILE

MISS_BUDGET = 1.0 - QOS_QUANTILE
MIP_REL_GAP = 1e-7
MILP_TIME_LIMIT_S = 60.0


@dataclass(frozen=True, eq=False)
class FluidTables:
    """Classes (batch sizes with p > 0) and each type's mean time and QoS-miss probability."""

    types: tuple[str, ...]
    probs: np.ndarray  # [J]
    mean_s: np.ndarray  # [T, J] mean service time in seconds
    miss: np.ndarray  # [T, J] P(service time > QoS) with no queueing


def miss_probability(scenario: Scenario, itype: str, support: np.ndarray) -> np.ndarray:
    """``P(S > QoS)`` per batch size, exact for the piecewise-linear inverse CDF."""
    prof = scenario.profiles.get(itype)
    k = prof.quantiles_ms.shape[1]
    knots = np.linspace(0.0, 1.0, k)
    b = np.repeat(support.astype(float), k)
    rows = prof.service_ms(b, np.tile(knots, len(support))).reshape(len(support), k)
    lo, hi = rows[:, :-1], rows[:, 1:]
    width = hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        part = np.where(width > 0, (scenario.qos_ms - lo) / width, 1.0)
    part = np.where(width > 0, np.clip(part, 0.0, 1.0), (scenario.qos_ms >= lo).astype(float))
    cdf = part.sum(axis=1) / (k - 1)
    return np.clip(1.0 - cdf, 0.0, 1.0)


@lru_cache(maxsize=16)
def fluid_tables(scenario: Scenario, types: tuple[str, ...]) -> FluidTables:
    live = scenario.mix.probs > 0
    support, probs = scenario.mix.support[live], scenario.mix.probs[live]
    mean_s = scenario.profiles.mean_table_ms(types, support) / 1000.0
    miss = np.vstack([miss_probability(scenario, t, support) for t in types])
    return FluidTables(types, probs, mean_s, miss)


def _split_constraints(tab: FluidTables) -> tuple[sparse.csr_array, sparse.csr_array, np.ndarray]:
    """Rows over variables ``[y (J*T, class-major), lam]``.

    Returns (A_eq: J rows ``sum_t y_jt - p_j lam = 0``; A_ub: T capacity rows
    ``sum_j y_jt mean_tj`` (to be compared with ``n_t``) and one miss row
    ``sum y_jt miss_tj - 0.01 lam``; the capacity coefficient of ``n_t``: -1 per type row).
    """
    t_n, j_n = tab.mean_s.shape
    nv = j_n * t_n + 1
    jj, tt = np.divmod(np.arange(j_n * t_n), t_n)
    eq = sparse.coo_array(
        (
            np.concatenate([np.ones(j_n * t_n), -tab.probs]),
            (
                np.concatenate([jj, np.arange(j_n)]),
                np.concatenate([np.arange(j_n * t_n), np.full(j_n, nv - 1)]),
            ),
        ),
        shape=(j_n, nv),
    ).tocsr()
    cap_rows = tt
    miss_row = np.full(j_n * t_n, t_n)
    ub = sparse.coo_array(
        (
            np.concatenate([tab.mean_s[tt, jj], tab.miss[tt, jj], [-MISS_BUDGET]]),
            (
                np.concatenate([cap_rows, miss_row, [t_n]]),
                np.concatenate([np.arange(j_n * t_n), np.arange(j_n * t_n), [nv - 1]]),
            ),
        ),
        shape=(t_n + 1, nv),
    ).tocsr()
    return eq, ub, -np.ones(t_n)


def fluid_bound(scenario: Scenario, pool: Pool) -> float:
    """Largest Poisson rate (qps) the pool could carry in the fluid limit within the p99 QoS.

    Linear program over ``y_jt`` (rate of class j sent to type t, qps) and ``lam``::

        maximise   lam
        subject to sum_t y_jt = p_j lam                         for every class j
                   sum_j y_jt mean_tj <= n_t                    for every type t in the pool
                   sum_jt y_jt P(S_tj > QoS) <= 0.01 lam        (the p99 allowance)
                   y >= 0, lam >= 0
    """
    types = pool.types
    for t in types:
        scenario.profiles.get(t)
    return float(fluid_bounds(scenario, types, np.array([[n for _, n in pool.counts]]))[0])


def fluid_bounds(scenario: Scenario, types: tuple[str, ...], counts: np.ndarray) -> np.ndarray:
    """The fluid bound of every row of ``counts`` (one LP each; same matrices, new limits)."""
    tab = fluid_tables(scenario, tuple(types))
    eq, ub, _ = _split_constraints(tab)
    nv = eq.shape[1]
    c = np.zeros(nv)
    c[-1] = -1.0
    out = np.zeros(len(counts))
    for i, row in enumerate(np.asarray(counts, dtype=float)):
        if row.sum() <= 0:
            continue
        # Types absent from the pool get zero capacity: their y columns are forced to 0.
        upper = np.where(np.tile(row, tab.probs.size) > 0, np.inf, 0.0)
        res = linprog(
            c,
            A_ub=ub,
            b_ub=np.append(row, 0.0),
            A_eq=eq,
            b_eq=np.zeros(eq.shape[0]),
            bounds=np.column_stack([np.zeros(nv), np.append(upper, np.inf)]),
            method="highs",
        )
        out[i] = max(0.0, -float(res.fun)) if res.status == 0 else 0.0
    return out


def _milp_matrices(
    tab: FluidTables, prices: np.ndarray
) -> tuple[sparse.csr_array, np.ndarray, np.ndarray, sparse.csr_array]:
    """Constraint matrix over ``[y (J*T), lam, n (T)]`` plus its row bounds; and budget row."""
    eq, ub, n_coef = _split_constraints(tab)
    t_n = len(prices)
    n_block_eq = sparse.csr_array((eq.shape[0], t_n))
    n_block_ub = sparse.vstack(
        [sparse.diags_array(n_coef).tocsr(), sparse.csr_array((1, t_n))]
    ).tocsr()
    budget = sparse.hstack(
        [sparse.csr_array((1, eq.shape[1])), sparse.csr_array(prices[None, :])]
    ).tocsr()
    a = sparse.vstack([sparse.hstack([eq, n_block_eq]), sparse.hstack([ub, n_block_ub])]).tocsr()
    lo = np.concatenate([np.zeros(eq.shape[0]), np.full(ub.shape[0], -np.inf)])
    hi = np.zeros(eq.shape[0] + ub.shape[0])
    return a, lo, hi, budget


def solve_milp(
    scenario: Scenario,
    budget_per_hr: float,
    caps: Mapping[str, int] | None = None,
    *,
    time_limit_s: float = MILP_TIME_LIMIT_S,
) -> Plan:
    """The pool under the budget with the highest fluid bound: a mixed-integer program.

    Variables: ``n_t`` (integer, ``0 <= n_t <= cap_t``) instances of each catalog type;
    ``y_jt >= 0`` the rate of batch class j sent to type t (qps); ``lam >= 0`` the rate.

    Objective: maximise ``lam``; ties are broken by a second solve that minimises the cost
    ``sum_t price_t n_t`` subject to ``lam >= lam* (1 - 1e-7)``.

    Constraints::

        sum_t y_jt - p_j lam                  = 0      for every class j (the mix is served)
        sum_j mean_tj y_jt - n_t             <= 0      for every type t (no type overloaded)
        sum_jt P(S_tj > QoS) y_jt - 0.01 lam <= 0      (at most 1% of queries miss QoS)
        sum_t price_t n_t                    <= budget_per_hr

    The size grows linearly with the catalog (J*T + T + 1 variables), so 16+ types solve in
    well under a second with HiGHS, where enumerating pools is hopeless.
    """
    types = catalog_types(scenario)
    limits = type_caps(scenario, budget_per_hr, caps)
    prices = np.array([scenario.prices.price_per_hr(t) for t in types])
    tab = fluid_tables(scenario, types)
    a, lo, hi, budget_row = _milp_matrices(tab, prices)
    n_y = tab.probs.size * len(types)
    nv = n_y + 1 + len(types)
    integrality = np.concatenate([np.zeros(n_y + 1), np.ones(len(types))])
    upper = np.concatenate([np.full(n_y + 1, np.inf), [limits[t] for t in types]])
    bounds = Bounds(np.zeros(nv), upper)
    rows = [LinearConstraint(a, lo, hi), LinearConstraint(budget_row, -np.inf, budget_per_hr)]
    options = {"mip_rel_gap": MIP_REL_GAP, "time_limit": time_limit_s}
    c = np.zeros(nv)
    c[n_y] = -1.0
    first = milp(c, integrality=integrality, bounds=bounds, constraints=rows, options=options)
    _check_milp(first, scenario, budget_per_hr)
    lam = -float(first.fun)
    if lam <= 0:
        raise _budget_error(scenario, budget_per_hr, "fluid", caps)
    floor = sparse.csr_array(([1.0], ([0], [n_y])), shape=(1, nv))
    cost = np.concatenate([np.zeros(n_y + 1), prices])
    second = milp(
        cost,
        integrality=integrality,
        bounds=bounds,
        constraints=[*rows, LinearConstraint(floor, lam * (1 - MIP_REL_GAP), np.inf)],
        options=options,
    )
    best = second if second.status == 0 and second.x is not None else first
    counts = np.round(best.x[n_y + 1 :]).astype(int)
    pool = Pool.of([(t, int(n)) for t, n in zip(types, counts, strict=True)])
    # Re-evaluate the chosen pool exactly (the MILP's lam carries solver tolerances).
    bound = fluid_bound(scenario, pool)
    entry = RankedPool(pool, pool.cost_per_hr(scenario.prices), bound)
    return Plan.single(scenario, budget_per_hr, "fluid", entry, pools_considered=0)


def _check_milp(res: object, scenario: Scenario, budget_per_hr: float) -> None:
    status = getattr(res, "status", -1)
    if status != 0 or getattr(res, "x", None) is None:
        raise InfeasibleError(
            f"the pool MILP for {scenario.model!r} at ${budget_per_hr:g}/h stopped without an "
            f"optimal pool (status {status}: {getattr(res, 'message', '')}).",
            "raise the solver time limit, or cap types with --max TYPE=N to shrink the search.",
        )


def _budget_error(
    scenario: Scenario, budget_per_hr: float, bound: str, caps: Mapping[str, int] | None
) -> KairosError:
    from kairos.allocator.plan import budget_too_small

    return budget_too_small(scenario, budget_per_hr, bound, caps)
