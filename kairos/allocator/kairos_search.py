"""The top pools by the KAIROS bound for catalogs too large to enumerate.

The bound of a pool depends on two discrete features, its base type ``G`` (the fastest type
present at the largest batch) and its ``beta`` (the largest ``v_k`` of the other present
types), and then only on counts. For fixed ``(G, beta)`` the paper's two cases collapse into
one concave expression (docs/allocator.md)::

    bound = min(Q_G n_G + (tau / s) C,  Q_G n_G / (1 - tau)),   C = sum_k n_k Q_k(beta)

(``C + Q_G n_G`` when the other types serve every query, ``Q_G n_G`` when they serve none),
so the best pools of one ``(G, beta)`` class are a small integer program over the counts of
the types allowed in it (``n_G >= 1``; no type faster than ``G``; no other type with ``v_k >
beta``; at least one with ``v_k = beta``; the budget and caps; and, where ``G`` alone cannot
serve 99% of the mix within QoS at p99, the coverage test over type presence).

Every pool belongs to exactly one class, so the ``k`` best pools of the catalog come from a
best-first search over classes: each class enters with the value of its LP relaxation (an
upper bound for all its pools); the front class is solved exactly; the pool it yields is
emitted and the rest of the class is split into disjoint parts by Lawler's rule (fix the
first counts, move one count below or above its value), each keyed by its parent's value and
solved when it reaches the front. Pools come out in decreasing order of bound, cheaper first
among equal bounds; each is re-scored with ``kairos_bounds`` itself. A test checks the search
against full enumeration.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from kairos.allocator.bounds import S_ONE_EPS, kairos_bounds, kairos_tables
from kairos.allocator.pools import catalog_types, check_budget, type_caps
from kairos.allocator.result import RankedPool
from kairos.catalog import Pool
from kairos.scenario import QOS_QUANTILE, Scenario

TIE_BREAK = 1e-7  # cost term of the objective, as a share of the class's best bound
MIP_REL_GAP = 1e-9


@dataclass(frozen=True, eq=False)
class _Class:
    """One ``(G, beta)`` class: objective ``min(a n_G + r C, c n_G)`` over allowed types."""

    base: int
    free: np.ndarray  # catalog type indices whose count may be positive (base first)
    q: np.ndarray  # per free type: Q_k(beta) (0 for the base)
    need: np.ndarray  # per free type: counts towards "some type with v_k = beta" (bool)
    a: float
    r: float
    c: float  # inf when there is no second case
    cover: np.ndarray | None  # [free, J] p99-within-QoS when the base alone cannot cover


class _Search:
    def __init__(
        self, scenario: Scenario, budget_per_hr: float, caps: Mapping[str, int] | None
    ) -> None:
        self.scenario = scenario
        self.types = catalog_types(scenario)
        self.budget = check_budget(budget_per_hr)
        limits = type_caps(scenario, self.budget, caps)
        self.cap = np.array([limits[t] for t in self.types], dtype=float)
        self.prices = np.array([scenario.prices.price_per_hr(t) for t in self.types])
        self.tab = kairos_tables(scenario, self.types)
        self.probs = scenario.mix.probs[scenario.mix.probs > 0]

    def classes(self) -> Iterator[_Class]:
        tab = self.tab
        order = tab.base_order.tolist()
        for pos, g in enumerate(order):
            if self.cap[g] < 1:
                continue
            slower = [k for k in order[pos + 1 :] if self.cap[k] >= 1]
            q_g = float(tab.q_all_qps[g])
            levels = sorted({int(tab.v_index[k]) for k in slower} | {-1})
            for vi in levels:
                allowed = [k for k in slower if tab.v_index[k] <= vi]
                if vi >= 0 and not any(tab.v_index[k] == vi for k in allowed):
                    continue
                yield self._make(g, vi, allowed, q_g)

    def _make(self, g: int, vi: int, allowed: list[int], q_g: float) -> _Class:
        tab = self.tab
        free = np.array([g, *allowed], dtype=np.int64)
        if vi < 0:
            # No other type serves any query: they add nothing (bound Q_G n_G).
            q = np.zeros(len(free))
            a, r, c = q_g, 0.0, np.inf
            need = np.zeros(len(free), dtype=bool)
        else:
            s = float(tab.cum_share[vi])
            q = np.concatenate([[0.0], tab.q_small_qps[allowed, vi]])
            need = np.concatenate([[False], tab.v_index[allowed] == vi])
            if s >= 1.0 - S_ONE_EPS:
                a, r, c = q_g, 1.0, np.inf
            else:
                tau = min(float(tab.cum_busy_ms[g, vi] / tab.cum_busy_ms[g, -1]), 1 - S_ONE_EPS)
                a, r, c = q_g, tau / s, q_g / (1.0 - tau)
        base_covers = float(tab.ok_p99[g].astype(float) @ self.probs) >= QOS_QUANTILE - 1e-12
        cover = None if base_covers else tab.ok_p99[free]
        return _Class(g, free, q, need, a, r, c, cover)

    def solve(
        self, cls: _Class, lo: np.ndarray, hi: np.ndarray, relax: bool = False
    ) -> tuple[float, np.ndarray] | None:
        """Best objective and counts (over ``cls.free``) within ``lo..hi``; None if empty.

        Variables: ``[n (free), z, y (free, presence; only with a coverage test), x (J)]``.
        """
        m = len(cls.free)
        prices = self.prices[cls.free]
        use_cover = cls.cover is not None
        j_n = cls.cover.shape[1] if cls.cover is not None else 0
        nv = m + 1 + (m + j_n if use_cover else 0)
        scale = max(cls.a * float(hi[0]), 1e-9)
        cost = np.zeros(nv)
        cost[m] = -1.0
        cost[:m] = TIE_BREAK * scale * prices / max(self.budget, 1e-9)
        rows: list[np.ndarray] = []
        low: list[float] = []
        high: list[float] = []

        def add(row: np.ndarray, lo_: float, hi_: float) -> None:
            rows.append(row)
            low.append(lo_)
            high.append(hi_)

        first = np.zeros(nv)
        first[:m] = -cls.r * cls.q
        first[0] = -cls.a
        first[m] = 1.0
        add(first, -np.inf, 0.0)  # z <= a n_G + r C
        if np.isfinite(cls.c):
            second = np.zeros(nv)
            second[0], second[m] = -cls.c, 1.0
            add(second, -np.inf, 0.0)  # z <= c n_G
        budget = np.zeros(nv)
        budget[:m] = prices
        add(budget, -np.inf, self.budget)
        if cls.need.any():
            need = np.zeros(nv)
            need[:m] = cls.need
            add(need, 1.0, np.inf)
        lower = np.concatenate([lo, [0.0]])
        upper = np.concatenate([hi, [np.inf]])
        integrality = np.concatenate([np.ones(m), [0.0]])
        if cls.cover is not None:
            self._coverage_rows(cls, m, nv, add)
            lower = np.concatenate([lower, np.zeros(m + j_n)])
            upper = np.concatenate([upper, np.ones(m + j_n)])
            integrality = np.concatenate([integrality, np.ones(m), np.zeros(j_n)])
        res = milp(
            cost,
            integrality=np.zeros(nv) if relax else integrality,
            bounds=Bounds(lower, upper),
            constraints=[LinearConstraint(np.vstack(rows), low, high)],
            options={"mip_rel_gap": MIP_REL_GAP},
        )
        if res.status != 0 or res.x is None:
            return None
        return float(res.x[m]), np.round(res.x[:m]).astype(np.int64)

    def _coverage_rows(
        self, cls: _Class, m: int, nv: int, add: Callable[[np.ndarray, float, float], None]
    ) -> None:
        """Presence ``y_k <= n_k <= cap_k y_k``; class j covered (``x_j``) only by a present
        type whose p99 service time is within QoS; covered mass >= 99%."""
        assert cls.cover is not None
        j_n = cls.cover.shape[1]
        for i in range(m):
            row = np.zeros(nv)
            row[m + 1 + i], row[i] = 1.0, -1.0
            add(row, -np.inf, 0.0)  # y <= n
            row = np.zeros(nv)
            row[i], row[m + 1 + i] = 1.0, -float(self.cap[cls.free[i]])
            add(row, -np.inf, 0.0)  # n <= cap y
        for j in range(j_n):
            row = np.zeros(nv)
            row[m + 1 + m + j] = 1.0
            row[m + 1 : m + 1 + m] = -cls.cover[:, j].astype(float)
            add(row, -np.inf, 0.0)  # x_j <= sum of present covering types
        mass = np.zeros(nv)
        mass[m + 1 + m :] = self.probs
        add(mass, QOS_QUANTILE - 1e-12, np.inf)


def kairos_pools(
    scenario: Scenario, budget_per_hr: float, caps: Mapping[str, int] | None = None
) -> Iterator[RankedPool]:
    """Pools with a positive KAIROS bound in decreasing order of it (see the module docstring)."""
    search = _Search(scenario, budget_per_hr, caps)
    tick = itertools.count()
    # Heap entries: (-key, tick, class, lo, hi, solution or None).
    heap: list[tuple[float, int, _Class, np.ndarray, np.ndarray, np.ndarray | None]] = []
    for cls in search.classes():
        lo = np.zeros(len(cls.free))
        lo[0] = 1.0
        hi = search.cap[cls.free].astype(float)
        relaxed = search.solve(cls, lo, hi, relax=True)
        if relaxed is not None and relaxed[0] > 0:
            heapq.heappush(heap, (-relaxed[0] * (1 + 1e-6), next(tick), cls, lo, hi, None))
    while heap:
        neg, _, cls, lo, hi, sol = heapq.heappop(heap)
        if sol is None:
            got = search.solve(cls, lo, hi)
            if got is not None and got[0] > 0:
                heapq.heappush(heap, (-got[0], next(tick), cls, lo, hi, got[1]))
            continue
        yield _ranked(search, cls, sol)
        for child_lo, child_hi in _lawler_split(lo, hi, sol):
            heapq.heappush(heap, (neg, next(tick), cls, child_lo, child_hi, None))


def _lawler_split(
    lo: np.ndarray, hi: np.ndarray, x: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Disjoint boxes covering ``[lo, hi]`` without the point ``x``."""
    for i in range(len(x)):
        if lo[i] <= x[i] - 1:
            below_lo, below_hi = lo.copy(), hi.copy()
            below_lo[:i], below_hi[:i] = x[:i], x[:i]
            below_hi[i] = x[i] - 1
            yield below_lo, below_hi
        if x[i] + 1 <= hi[i]:
            above_lo, above_hi = lo.copy(), hi.copy()
            above_lo[:i], above_hi[:i] = x[:i], x[:i]
            above_lo[i] = x[i] + 1
            yield above_lo, above_hi


def _ranked(search: _Search, cls: _Class, counts: np.ndarray) -> RankedPool:
    full = np.zeros(len(search.types), dtype=np.int64)
    full[cls.free] = counts
    pool = Pool.of([(t, int(n)) for t, n in zip(search.types, full, strict=True)])
    bound = float(kairos_bounds(search.scenario, search.types, full[None, :])[0])
    return RankedPool(pool, pool.cost_per_hr(search.scenario.prices), bound)


def kairos_top(
    scenario: Scenario, budget_per_hr: float, k: int, caps: Mapping[str, int] | None = None
) -> list[RankedPool]:
    """The ``k`` pools with the highest KAIROS bound, best first (ties: cheaper first)."""
    out = list(itertools.islice(kairos_pools(scenario, budget_per_hr, caps), k))
    return sorted(out, key=lambda r: (-r.upper_bound_qps, r.cost_per_hr))
