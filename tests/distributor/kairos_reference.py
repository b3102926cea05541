"""A frozen copy of the ``kairos`` policy as it was before its decision path was sped up.

Kept as the reference the fast implementation must match decision for decision
(tests/distributor/test_kairos.py); it is not registered, and it is not maintained.

Original docstring: KAIROS: QoS-aware bipartite matching of queued queries to all instances,
idle or busy.

At each decision the first ``window_factor * N`` queued queries are matched to the ``N`` up
instances by min-cost assignment (costs in ``kairos.distributor.policies.kairos.matching``).
Only pairs whose instance is idle start; a query matched to a busy instance keeps waiting
for it, which is what stops a large query from grabbing an idle slow instance that would
break its QoS.
Nothing is remembered between decisions: every decision re-solves from the live state, so a
query can never be lost or started twice, and a down instance simply drops out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from kairos.distributor.base import Decision, Policy, PolicyContext
from kairos.distributor.policies.kairos.matching import OVERDUE_EPS_QOS, MatchWeights
from kairos.distributor.state import ClusterState
from kairos.errors import ConfigError
from kairos.workload import Query

# Pools up to this size decide a single queued query by a scan (see ``Kairos.decide_one``);
# beyond it numpy's vector work over the pruned columns is cheaper.
SCAN_MAX_INSTANCES = 64


@dataclass(frozen=True, eq=False)
class Matching:
    """One decision's full assignment: ``queries[rows[k]]`` goes to ``instances[cols[k]]``."""

    queries: list[Query]
    instances: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    total_cost: float
    hold: np.ndarray | None = None  # per matched pair: True = do not start it (doomed there)


class KairosReference(Policy):
    """The paper's distributor as it was before the speed-up, kept as the reference that the
    fast ``Kairos`` policy's decisions are tested against. Same options and extensions (hold
    doomed pairs, urgency, the window cap): see ``kairos.distributor.kairos`` and
    docs/distributor.md, "Beyond the paper"."""

    name = "kairos-reference"

    def __init__(
        self,
        ctx: PolicyContext,
        *,
        window_factor: float = 2.0,
        safeguard_frac: float = 0.02,
        slack_penalty_qos: float = 1e4,
        miss_penalty_qos: float = 1e6,
        max_queries: int = 64,
        slack_quantile: float | None = None,
        plain: bool = False,
        urgency_frac: float | None = 0.5,
        hold_doomed: bool = True,
        paper: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(ctx, **options)
        if not (math.isfinite(window_factor) and window_factor > 0):
            raise ConfigError(
                f"window_factor {window_factor!r} is not a positive number.",
                "pass window_factor such as 2 (the paper's 2N queries).",
            )
        if not isinstance(max_queries, int) or max_queries < 1:
            raise ConfigError(
                f"max_queries {max_queries!r} is not a positive whole number.",
                "pass max_queries such as 64 (queries considered per decision at most).",
            )
        if slack_quantile is not None and not 0.0 <= slack_quantile <= 1.0:
            raise ConfigError(
                f"slack_quantile {slack_quantile!r} is not in [0, 1].",
                "pass slack_quantile such as 0.9, or leave it unset to use the mean.",
            )
        if urgency_frac is not None and not (math.isfinite(urgency_frac) and urgency_frac >= 0):
            raise ConfigError(
                f"urgency_frac {urgency_frac!r} is not a non-negative number.",
                "pass urgency_frac such as 0.5, or None to turn the urgency bonus off.",
            )
        self.urgency_frac = None if paper else urgency_frac
        self.hold_doomed = bool(hold_doomed) and not paper
        self.slack_quantile = slack_quantile
        self.window_factor = float(window_factor)
        self.max_queries = max_queries
        self.weights = MatchWeights(safeguard_frac, slack_penalty_qos, miss_penalty_qos)
        self.plain = bool(plain)
        types = ctx.type_names
        coeffs = ctx.profiles.heterogeneity(types)
        self._coeff = np.array([coeffs[t] for t in types])
        index = {t: k for k, t in enumerate(types)}
        self._inst_type = np.array([index[t] for t in ctx.instance_types], dtype=np.int64)
        self._all = np.arange(len(ctx.instance_types), dtype=np.int64)
        self._qos_s = ctx.qos_s
        self._overdue_s = OVERDUE_EPS_QOS * ctx.qos_s
        self._members = [np.flatnonzero(self._inst_type == t) for t in range(len(types))]
        self._tables: dict[str, np.ndarray] = {}  # [batch, type] service time (s) by kind
        # Plain-float copies for ``decide_one``'s scan.
        self._type_list: list[int] = self._inst_type.tolist()
        self._coeff_list: list[float] = self._coeff.tolist()
        self._scan_cache: dict[int, tuple[list[float], list[float] | None]] = {}

    def decide(self, state: ClusterState) -> list[Decision]:
        idle = state.idle
        if not idle or not state.queue:
            return []
        if len(state.queue) == 1 and not self.plain and len(self._all) <= SCAN_MAX_INSTANCES:
            return self.decide_one(state)
        return self.decide_matching(state)

    def decide_matching(self, state: ClusterState) -> list[Decision]:
        """The general decision: solve the assignment, start the matched idle pairs."""
        idle = state.idle
        m = self.match(state)
        inst = m.instances
        hold = m.hold.tolist() if m.hold is not None else [False] * len(m.rows)
        return [
            (m.queries[r].qid, int(inst[c]))
            for r, c, h in zip(m.rows.tolist(), m.cols.tolist(), hold, strict=True)
            if not h and int(inst[c]) in idle
        ]

    def decide_one(self, state: ClusterState) -> list[Decision]:
        """One queued query: the assignment is the cheapest column, found by a scan.

        The same decision as ``decide_matching`` (same float operations in the same order,
        ties to the lowest instance, which is what the assignment solver returns for one
        row), without numpy's per-call cost, which dominates on small pools. It is the most
        common live decision: at the reference pool's allowable rate about two thirds of
        decisions see a single queued query (tests/distributor/test_kairos.py).
        """
        (query,) = state.queue.values()
        now = state.now_s
        rows = self._scan_rows(query.batch_size)
        mean_s, tail_s = rows[0], rows[1]
        overhead = state.overhead_s
        deadline = query.arrival_s + self._qos_s
        live = deadline >= now
        ahead = deadline - now
        miss, near = (
            self.weights.miss_penalty_qos * self._qos_s,
            self.weights.slack_penalty_qos * self._qos_s,
        )
        guard = self.weights.safeguard_frac * self._qos_s
        idle, est_free, up, coeff = state.idle, state.est_free_s, state.up, self._coeff_list
        best_j, best_cost, best_slack, any_savable = -1, math.inf, 0.0, False
        for j, t in enumerate(self._type_list):
            if not up[j]:
                continue
            rem = 0.0 if j in idle else max(max(est_free[j] - now, 0.0), self._overdue_s)
            finish = rem + (mean_s[t] + overhead)
            cost = coeff[t] * finish
            slack = ahead - (finish if tail_s is None else rem + (tail_s[t] + overhead))
            if live:
                if slack < 0.0:
                    cost += miss
                elif slack < guard:
                    cost += near
            if cost < best_cost:
                best_j, best_cost = j, cost
                best_slack = ahead - finish
            any_savable = any_savable or ahead - finish >= 0.0
        if best_j < 0 or best_j not in idle:
            return []
        if self.hold_doomed and live and any_savable and best_slack < 0.0:
            return []
        return [(query.qid, best_j)]

    def _scan_rows(self, batch: int) -> tuple[list[float], list[float] | None]:
        rows = self._scan_cache.get(batch)
        if rows is None:
            b = np.array([batch], dtype=np.int64)
            mean = self._lookup("mean", b)[0].tolist()
            tail = None if self.slack_quantile is None else self._lookup("tail", b)[0].tolist()
            rows = self._scan_cache[batch] = (mean, tail)
        return rows

    def match(self, state: ClusterState) -> Matching:
        """Solve this decision's assignment (every pair, idle or busy instance)."""
        up = self._all if all(state.up) else self._all[np.array(state.up, dtype=bool)]
        n_rows = min(len(state.queue), math.ceil(self.window_factor * len(up)))
        if not self.plain:
            n_rows = min(n_rows, self.max_queries)
        queries = state.head(n_rows)
        if n_rows == 0 or len(up) == 0:
            empty = np.zeros(0, dtype=np.int64)
            return Matching(queries, up, empty, empty, 0.0)
        remaining = self._remaining(state, up)
        col_type = self._inst_type[up]
        if not self.plain and n_rows * len(self._coeff) < len(up):
            members = (
                self._members
                if len(up) == len(self._all)
                else [np.flatnonzero(col_type == t) for t in range(len(self._coeff))]
            )
            keep = candidate_columns(members, remaining, n_rows)
            up, remaining, col_type = up[keep], remaining[keep], col_type[keep]
        batches = np.fromiter((q.batch_size for q in queries), np.int64, n_rows)
        # The driver's transport delay (0 in simulation) is part of every finish estimate.
        est_s = self._lookup("mean", batches) + state.overhead_s
        tail_s = (
            None
            if self.slack_quantile is None
            else self._lookup("tail", batches) + state.overhead_s
        )
        deadline_s = np.fromiter((q.arrival_s for q in queries), float, n_rows) + self._qos_s
        cost = pair_costs(
            est_s,
            deadline_s,
            col_type,
            remaining,
            self._coeff,
            state.now_s,
            self._qos_s,
            self.weights,
            tail_s,
        )
        hold = None
        if self.urgency_frac is not None or self.hold_doomed:
            slack = (deadline_s - state.now_s)[:, None] - (remaining[None, :] + est_s[:, col_type])
            live = deadline_s >= state.now_s
            if self.urgency_frac is not None and n_rows > len(up):
                cost = (
                    cost
                    - urgency_bonus(
                        slack,
                        live,
                        self.urgency_frac * self._qos_s,
                        self.weights.slack_penalty_qos * self._qos_s,
                    )[:, None]
                )
        rows, cols = assign(cost)
        if self.hold_doomed:
            savable = live & (slack.max(axis=1) >= 0.0)
            hold = savable[rows] & (slack[rows, cols] < 0.0)
        return Matching(queries, up, rows, cols, float(cost[rows, cols].sum()), hold)

    def _lookup(self, kind: str, batches: np.ndarray) -> np.ndarray:
        """Mean (or tail) service time (s) of each batch on each type, from a dense table."""
        table = self._tables.get(kind, np.full((0, len(self._coeff)), np.nan))
        top = int(batches.max())
        if top >= len(table):
            grown = np.full((max(top + 1, 2 * len(table)), len(self._coeff)), np.nan)
            grown[: len(table)] = table
            table = grown
        rows = table[batches]
        missing = np.isnan(rows[:, 0])
        if missing.any():
            for b in np.unique(batches[missing]).tolist():
                table[b] = self._service_s(kind, b)
            rows = table[batches]
        self._tables[kind] = table
        return rows

    def _service_s(self, kind: str, batch: int) -> np.ndarray:
        if kind == "mean":
            return self.ctx.est_ms(batch) / 1000.0
        profiles = self.ctx.profiles
        q = float(self.slack_quantile or 0.0)
        return (
            np.array([profiles.get(t).quantile_ms(batch, q) for t in self.ctx.type_names]) / 1000.0
        )

    def _remaining(self, state: ClusterState, instances: np.ndarray) -> np.ndarray:
        """Time until free of each instance; overdue busy ones get a tiny positive value."""
        free_s = np.array(state.est_free_s)[instances]
        rem = np.maximum(free_s - state.now_s, 0.0)
        busy = np.ones(len(state.est_free_s), dtype=bool)
        busy[list(state.idle)] = False
        return np.where(busy[instances], np.maximum(rem, self._overdue_s), 0.0)


# Frozen copies of the matching functions the reference used.


def pair_costs(
    est_s: np.ndarray,
    deadline_s: np.ndarray,
    col_type: np.ndarray,
    col_remaining_s: np.ndarray,
    coeff: np.ndarray,
    now_s: float,
    qos_s: float,
    weights: MatchWeights,
    slack_est_s: np.ndarray | None = None,
) -> np.ndarray:
    """Cost matrix ``[queries, columns]`` of the matching.

    ``est_s[i, t]``: mean service time of query ``i`` on type ``t``; ``col_type[j]`` and
    ``col_remaining_s[j]``: type index and time until free of column ``j``; ``coeff[t]``: c_t.
    ``slack_est_s`` (same shape as ``est_s``), when given, replaces the mean in the slack
    test only (for a tail-aware safeguard); the weighted finish always uses the mean.
    """
    finish = col_remaining_s[None, :] + est_s[:, col_type]
    cost = coeff[col_type][None, :] * finish
    if slack_est_s is not None:
        finish = col_remaining_s[None, :] + slack_est_s[:, col_type]
    slack = (deadline_s - now_s)[:, None] - finish
    live = (deadline_s >= now_s)[:, None]
    guard = weights.safeguard_frac * qos_s
    cost += np.where(
        live & (slack < 0.0),
        weights.miss_penalty_qos * qos_s,
        np.where(live & (slack < guard), weights.slack_penalty_qos * qos_s, 0.0),
    )
    return cost


def urgency_bonus(
    slack_s: np.ndarray, live: np.ndarray, threshold_s: float, bonus: float
) -> np.ndarray:
    """Per-row bonus: ``bonus`` for a live query whose best slack is in [0, threshold).

    ``slack_s[i, j]``: deadline minus estimated finish of query ``i`` on column ``j``. Only
    matters when rows outnumber columns (the matching then chooses which queries to serve).
    """
    best = slack_s.max(axis=1)
    return np.where(live & (best >= 0.0) & (best < threshold_s), bonus, 0.0)


def assign(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min-cost rectangular assignment: ``(rows, cols)`` with rows ascending."""
    rows, cols = linear_sum_assignment(cost)
    return rows, cols


def candidate_columns(
    members: list[np.ndarray], remaining_s: np.ndarray, n_queries: int
) -> np.ndarray:
    """Instances worth a column: per type, the ``n_queries`` that free up soonest.

    ``members[t]``: positions (ascending) of type ``t``'s instances in ``remaining_s``.
    Exact: a row's cost on a type is non-decreasing in the instance's remaining time (both
    the weighted finish and the penalty are), and at most ``n_queries`` columns are used,
    so any optimal assignment can swap a later instance of a type for an unused sooner one
    without raising its cost. Ties go to the lower position.
    """
    keep = []
    for idx in members:
        if len(idx) > n_queries:
            idx = idx[np.argsort(remaining_s[idx], kind="stable")[:n_queries]]
        keep.append(idx)
    return np.sort(np.concatenate(keep))
