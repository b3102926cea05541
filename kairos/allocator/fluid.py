"""The fluid bound (beyond the paper): an LP upper bound on any policy's allowable throughput.

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

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from kairos.catalog import Pool
from kairos.scenario import MISS_BUDGET, QOS_QUANTILE, Scenario


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
def fluid_tables(scenario: Scenario, types: tuple[str, ...], tail: bool = False) -> FluidTables:
    """The LP's tables. ``tail=True`` is the tail-aware variant (a heuristic, not a valid
    bound): a class whose p99 service time on a type exceeds QoS counts every query it sends
    there as a miss, so a class only counts on types that serve it within QoS at the tail."""
    live = scenario.mix.probs > 0
    support, probs = scenario.mix.support[live], scenario.mix.probs[live]
    mean_s = scenario.profiles.mean_table_ms(types, support) / 1000.0
    miss = np.vstack([miss_probability(scenario, t, support) for t in types])
    if tail:
        p99 = np.vstack(
            [scenario.profiles.get(t).quantile_ms(support, QOS_QUANTILE) for t in types]
        )
        miss = np.where(p99 > scenario.qos_ms, 1.0, miss)
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


def fluid_lp(tab: FluidTables, counts: np.ndarray) -> tuple[float, np.ndarray, float]:
    """The fluid LP of one pool (``counts`` over ``tab.types``): ``(lam*, u, mu)``.

    ``u[t] >= 0`` and ``mu >= 0`` are the LP's dual prices of the capacity rows and of the
    miss row; any such prices give a valid upper bound on other pools too (``dual_bounds``).
    """
    row = np.asarray(counts, dtype=float)
    zero = (0.0, np.zeros(len(row)), 0.0)
    if row.sum() <= 0:
        return zero
    eq, ub, _ = _split_constraints(tab)
    nv = eq.shape[1]
    c = np.zeros(nv)
    c[-1] = -1.0
    # Types absent from the pool have capacity 0, which forces their rates to 0 (every mean
    # service time is positive) and gives their capacity row a meaningful dual price too.
    res = linprog(
        c,
        A_ub=ub,
        b_ub=np.append(row, 0.0),
        A_eq=eq,
        b_eq=np.zeros(eq.shape[0]),
        bounds=(0, None),
        method="highs",
    )
    if res.status != 0:
        return zero
    duals = np.maximum(-np.asarray(res.ineqlin.marginals, dtype=float), 0.0)
    return max(0.0, -float(res.fun)), duals[:-1], float(duals[-1])


def fluid_bounds(
    scenario: Scenario, types: tuple[str, ...], counts: np.ndarray, tail: bool = False
) -> np.ndarray:
    """The fluid bound of every row of ``counts`` (one LP each; same matrices, new limits)."""
    tab = fluid_tables(scenario, tuple(types), tail)
    return np.array([fluid_lp(tab, row)[0] for row in np.asarray(counts)], dtype=float)


def dual_bounds(tab: FluidTables, counts: np.ndarray, u: np.ndarray, mu: float) -> np.ndarray:
    """Upper bounds on the fluid bound of every row of ``counts`` from fixed dual prices.

    Weak duality: for any ``u >= 0``, ``mu >= 0`` and any feasible split of a pool with type
    set S, ``sum_t u_t n_t + 0.01 mu lam >= sum_jt (u_t m_tj + mu miss_tj) y_jt >= lam
    sum_j p_j w_j`` with ``w_j = min_{t in S} (u_t m_tj + mu miss_tj)``, so ``lam <= sum_t
    u_t n_t / (sum_j p_j w_j - 0.01 mu)`` when the denominator is positive (else no bound:
    inf). One pass per distinct type set, then a dot product per pool: cheap for millions.
    """
    counts = np.asarray(counts)
    present = counts > 0
    weights = 1 << np.arange(present.shape[1], dtype=np.int64)
    pattern = present.astype(np.int64) @ weights
    uniq, inverse = np.unique(pattern, return_inverse=True)
    bits = (uniq[:, None] & weights[None, :]) > 0
    price = u[:, None] * tab.mean_s + mu * tab.miss  # [T, J]
    denom = np.empty(len(uniq))
    for k in range(len(uniq)):
        w = price[bits[k]].min(axis=0) if bits[k].any() else np.full(price.shape[1], np.inf)
        denom[k] = float(w @ tab.probs) - MISS_BUDGET * mu
    num = counts.astype(float) @ u
    per_set = denom[inverse.reshape(-1)]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(per_set > 0, num / per_set, np.inf)


def fluid_feasible_sets(
    scenario: Scenario, types: tuple[str, ...], bits: np.ndarray, tail: bool = False
) -> np.ndarray:
    """``bits[S, T]`` type sets -> can a pool with exactly those types have a positive bound?

    The fluid bound is positive iff the mix's least possible expected miss share (each class
    on its best present type) is within the 1% allowance.
    """
    tab = fluid_tables(scenario, types, tail)
    miss = np.where(bits[:, :, None], tab.miss[None, :, :], np.inf).min(axis=1)
    return np.where(np.isfinite(miss), miss, 1.0) @ tab.probs <= MISS_BUDGET + 1e-12
