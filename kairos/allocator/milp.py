"""The fluid bound as a mixed-integer program over instance counts: the best pools of a catalog
too large to enumerate, best first.

Variables: ``n_t`` (integer, ``0 <= n_t <= cap_t``) instances of each catalog type; ``y_jt >=
0`` the rate of batch class j sent to type t (qps); ``lam >= 0`` the rate::

    maximise   lam - eps * sum_t price_t n_t
    subject to sum_t y_jt - p_j lam                  = 0   every class j is served
               sum_j mean_tj y_jt - n_t             <= 0   no type is loaded beyond its instances
               sum_jt P(S_tj > QoS) y_jt - 0.01 lam <= 0   at most 1% of queries miss QoS
               sum_t price_t n_t                    <= budget

``eps`` is small enough that cost only breaks ties (it moves the objective by at most 1e-5 of
the catalog's bound), so among pools with the same bound the cheapest comes first.

The K best pools come one at a time: after each, a *no-good cut* removes exactly that count
vector, ``sum_t |n_t - n*_t| >= 1``, and the program is solved again. ``|n_t - n*_t|`` is
linear where ``n*_t`` sits at a bound of ``n_t`` (0 or the cap: most types of most pools);
elsewhere one binary per type picks the side. The size grows linearly with the catalog
(``J*T + T + 1`` variables plus a few per cut), so 16-32 types solve in about a second each.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from kairos.allocator.feasible import budget_too_small
from kairos.allocator.fluid import FluidTables, _split_constraints, fluid_bounds, fluid_tables
from kairos.allocator.pools import catalog_types, check_budget, type_caps
from kairos.allocator.result import Plan, RankedPool
from kairos.catalog import Pool
from kairos.errors import InfeasibleError
from kairos.scenario import Scenario

MIP_REL_GAP = 1e-7
MILP_TIME_LIMIT_S = 60.0
TIE_BREAK = 1e-5  # the cost term spans at most this share of the catalog's bound


def _milp_matrices(tab: FluidTables, prices: np.ndarray) -> tuple[sparse.csr_array, np.ndarray]:
    """Constraint rows over ``[y (J*T), lam, n (T)]`` (flow, capacity, miss, budget); their
    lower limits (the upper limits are 0 except the budget row's)."""
    eq, ub, n_coef = _split_constraints(tab)
    t_n = len(prices)
    n_block_eq = sparse.csr_array((eq.shape[0], t_n))
    n_block_ub = sparse.vstack(
        [sparse.diags_array(n_coef).tocsr(), sparse.csr_array((1, t_n))]
    ).tocsr()
    budget = sparse.hstack(
        [sparse.csr_array((1, eq.shape[1])), sparse.csr_array(prices[None, :])]
    ).tocsr()
    a = sparse.vstack(
        [sparse.hstack([eq, n_block_eq]), sparse.hstack([ub, n_block_ub]), budget]
    ).tocsr()
    lo = np.concatenate([np.zeros(eq.shape[0]), np.full(ub.shape[0] + 1, -np.inf)])
    return a, lo


class FluidProgram:
    """The pool MILP of one scenario, budget and caps; ``pools()`` yields pools best first."""

    def __init__(
        self,
        scenario: Scenario,
        budget_per_hr: float,
        caps: Mapping[str, int] | None = None,
        *,
        time_limit_s: float = MILP_TIME_LIMIT_S,
        tail: bool = False,
        target_qps: float | None = None,
    ) -> None:
        self.scenario = scenario
        self.tail = tail
        # With a target: pools whose bound reaches it, cheapest first (the cost is the
        # objective, ``lam >= target`` a constraint, the budget only a cap on the search).
        self.target_qps = target_qps
        self.budget = check_budget(budget_per_hr)
        self.caps = caps
        self.types = catalog_types(scenario)
        limits = type_caps(scenario, self.budget, caps)
        self.cap = np.array([limits[t] for t in self.types], dtype=float)
        self.prices = np.array([scenario.prices.price_per_hr(t) for t in self.types])
        tab = fluid_tables(scenario, self.types, tail)
        self.a, self.lo = _milp_matrices(tab, self.prices)
        self.hi = np.append(np.zeros(self.a.shape[0] - 1), self.budget)
        self.n_y = tab.probs.size * len(self.types)
        self.time_limit_s = time_limit_s
        self._cuts: list[np.ndarray] = []
        # eps: at most TIE_BREAK of a bound on lam (every instance the budget buys, each
        # serving its fastest class), so cost never outweighs a real difference in bound.
        lam_cap = float((self.cap / tab.mean_s.min(axis=1)).sum())
        self.eps = TIE_BREAK * lam_cap / max(self.budget, 1e-9)

    def _solve(self) -> np.ndarray | None:
        """Counts of the best pool not yet cut off, or None when none is left."""
        t_n, n_v = len(self.types), self.n_y + 1 + len(self.types)
        k = len(self._cuts)
        # Extra variables per cut: d (T, the deviations) and w (T, binary sides).
        n_all = n_v + 2 * t_n * k
        c = np.zeros(n_all)
        lower = np.zeros(n_all)
        if self.target_qps is None:
            c[self.n_y] = -1.0
            c[self.n_y + 1 : n_v] = self.eps * self.prices
        else:
            c[self.n_y + 1 : n_v] = self.prices
            lower[self.n_y] = self.target_qps
        upper = np.concatenate(
            [np.full(self.n_y + 1, np.inf), self.cap, np.tile(np.append(self.cap, np.ones(t_n)), k)]
        )
        integrality = np.concatenate(
            [np.zeros(self.n_y + 1), np.ones(t_n), np.tile(np.r_[np.zeros(t_n), np.ones(t_n)], k)]
        )
        base = sparse.hstack([self.a, sparse.csr_array((self.a.shape[0], n_all - n_v))]).tocsr()
        rows = [LinearConstraint(base, self.lo, self.hi)]
        for i, star in enumerate(self._cuts):
            rows.extend(self._cut_rows(i, star, n_v, n_all))
        res = milp(
            c,
            integrality=integrality,
            bounds=Bounds(lower, upper),
            constraints=rows,
            options={"mip_rel_gap": MIP_REL_GAP, "time_limit": self.time_limit_s},
        )
        if res.status == 2 or (res.status == 0 and res.x is None):
            return None  # infeasible: every pool is cut off
        if res.status != 0 or res.x is None:
            raise InfeasibleError(
                f"the pool MILP for {self.scenario.model!r} at ${self.budget:g}/h stopped "
                f"without an optimal pool (status {res.status}: {res.message}).",
                "cap types with --max TYPE=N to shrink the search.",
            )
        if float(res.x[self.n_y]) <= 0:
            return None
        return np.round(res.x[self.n_y + 1 : n_v]).astype(np.int64)

    def _cut_rows(self, i: int, star: np.ndarray, n_v: int, n_all: int) -> list[LinearConstraint]:
        """``sum_t d_t >= 1`` with ``d_t <= |n_t - n*_t|``: excludes exactly ``star``."""
        t_n = len(self.types)
        d0 = n_v + 2 * t_n * i
        w0 = d0 + t_n
        n0 = self.n_y + 1
        rows_a: list[np.ndarray] = []
        lo: list[float] = []
        hi: list[float] = []

        def row(entries: dict[int, float], low: float, high: float) -> None:
            r = np.zeros(n_all)
            for j, v in entries.items():
                r[j] = v
            rows_a.append(r)
            lo.append(low)
            hi.append(high)

        row({d0 + t: 1.0 for t in range(t_n)}, 1.0, np.inf)
        for t in range(t_n):
            s, cap = float(star[t]), float(self.cap[t])
            if s <= 0:  # d_t <= n_t
                row({d0 + t: 1.0, n0 + t: -1.0}, -np.inf, 0.0)
            elif s >= cap:  # d_t <= cap - n_t
                row({d0 + t: 1.0, n0 + t: 1.0}, -np.inf, cap)
            else:
                # w_t = 1: d_t <= n_t - s; w_t = 0: d_t <= s - n_t (big-M = cap).
                row({d0 + t: 1.0, n0 + t: -1.0, w0 + t: cap}, -np.inf, cap - s)
                row({d0 + t: 1.0, n0 + t: 1.0, w0 + t: -cap}, -np.inf, s)
        return [LinearConstraint(sparse.csr_array(np.vstack(rows_a)), lo, hi)]

    def pools(self) -> Iterator[RankedPool]:
        """Pools with a positive bound, in decreasing order of fluid bound (ties: cheaper);
        with a target, pools whose bound reaches it in increasing cost."""
        while True:
            counts = self._solve()
            if counts is None:
                return
            self._cuts.append(counts)
            pool = Pool.of([(t, int(n)) for t, n in zip(self.types, counts, strict=True)])
            if pool.size == 0:
                continue
            # Re-evaluate exactly (the MILP's lam carries solver tolerances).
            counts_row = np.array([[pool.count(t) for t in pool.types]])
            bound = float(fluid_bounds(self.scenario, pool.types, counts_row, self.tail)[0])
            if bound <= 0:
                return
            yield RankedPool(pool, pool.cost_per_hr(self.scenario.prices), bound)


def milp_top(
    scenario: Scenario,
    budget_per_hr: float,
    k: int,
    caps: Mapping[str, int] | None = None,
    *,
    time_limit_s: float = MILP_TIME_LIMIT_S,
) -> list[RankedPool]:
    """The ``k`` pools with the highest fluid bound (no-good cuts; see the module docstring)."""
    program = FluidProgram(scenario, budget_per_hr, caps, time_limit_s=time_limit_s)
    out: list[RankedPool] = []
    for entry in program.pools():
        out.append(entry)
        if len(out) >= k:
            break
    if not out:
        raise budget_too_small(scenario, budget_per_hr, "fluid", caps)
    return out


def solve_milp(
    scenario: Scenario,
    budget_per_hr: float,
    caps: Mapping[str, int] | None = None,
    *,
    time_limit_s: float = MILP_TIME_LIMIT_S,
) -> Plan:
    """The pool under the budget with the highest fluid bound (ties: the cheapest)."""
    (entry,) = milp_top(scenario, budget_per_hr, 1, caps, time_limit_s=time_limit_s)
    return Plan.single(scenario, budget_per_hr, "fluid", entry, pools_considered=0, ranking="milp")
