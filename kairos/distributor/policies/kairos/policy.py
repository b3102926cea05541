"""KAIROS: QoS-aware bipartite matching of queued queries to all instances, idle or busy.

At each decision the first ``window_factor * N`` queued queries are matched to the ``N`` up
instances by min-cost assignment (costs in ``matching`` beside this module). Only pairs
whose instance is idle start; a query matched to a busy instance keeps waiting for it, which is
what stops a large query from grabbing an idle slow instance that would break its QoS.
Nothing is remembered between decisions: every decision re-solves from the live state, so a
query can never be lost or started twice, and a down instance simply drops out.

``match`` builds and solves a decision's assignment; ``decide`` reaches exactly the same
decision more cheaply (a scan for one queued query, plain floats for small matrices, fewer
array operations for large ones: ``kairos.distributor.policies.kairos.fast_paths``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from kairos.distributor.base import Decision, Policy, PolicyContext, register
from kairos.distributor.policies.kairos.fast_paths import (
    SCAN_MAX_INSTANCES,
    decide_dense,
    decide_small,
    remaining_s,
)
from kairos.distributor.policies.kairos.matching import (
    MatchWeights,
    assign,
    candidate_columns,
    pair_costs,
    urgency_bonus,
)
from kairos.distributor.policies.kairos.tables import KairosTables
from kairos.distributor.state import ClusterState
from kairos.errors import ConfigError
from kairos.workload import Query


@dataclass(frozen=True, eq=False)
class Matching:
    """One decision's full assignment: ``queries[rows[k]]`` goes to ``instances[cols[k]]``."""

    queries: list[Query]
    instances: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    total_cost: float
    hold: np.ndarray | None = None  # per matched pair: True = do not start it (doomed there)


@register
class Kairos(Policy):
    """The paper's distributor. Options: ``window_factor`` (queries considered per instance,
    2), ``safeguard_frac`` (0.02), ``slack_penalty_qos`` and ``miss_penalty_qos`` (penalties
    as multiples of QoS), ``max_queries`` (cap on the window, 64; see below),
    ``slack_quantile`` (None: the safeguard tests the mean service time, as the paper; a
    number q: it tests the profile's q-quantile instead; an experiment, not a default),
    ``plain`` (True: the paper's matrix, one column per instance, no pruning and no cap),
    ``urgency_frac`` (0.5; None turns it off) and ``hold_doomed`` (True): two extensions of
    the paper, see below; ``paper=True`` turns both off.

    Extensions (docs/distributor.md, "Beyond the paper"). *Hold doomed pairs*: a matched pair
    on an idle instance whose estimated finish misses the query's deadline is not started when
    some other instance (idle or busy) could still finish it in time; the query waits and the
    next decision re-solves. Without it, a second large query that finds the GPU column taken
    is forced onto an idle CPU where it certainly misses. *Urgency*: when the window holds more
    queries than there are columns, a live query whose best achievable slack is below
    ``urgency_frac * QoS`` gets a per-row bonus of the slack penalty, so it outbids queries
    that can afford to wait; with fewer queries than columns every row is matched anyway and a
    per-row constant changes nothing.

    The cap bounds a decision's work when the queue is long: the assignment of ``R`` queries
    to at most ``R`` columns per type costs about ``R^2 * columns``. It changes nothing while
    ``window_factor * N <= max_queries`` (every pool up to 32 instances) or while fewer than
    ``max_queries`` queries wait."""

    name = "kairos"

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
        self.plain = bool(plain)
        self.tables = KairosTables.build(
            ctx,
            window_factor=float(window_factor),
            max_queries=max_queries,
            weights=MatchWeights(safeguard_frac, slack_penalty_qos, miss_penalty_qos),
            slack_quantile=slack_quantile,
            urgency_frac=None if paper else urgency_frac,
            hold_doomed=bool(hold_doomed) and not paper,
        )

    def decide(self, state: ClusterState) -> list[Decision]:
        idle = state.idle
        if not idle or not state.queue:
            return []
        if self.plain:
            return self.decide_matching(state)
        tab = self.tables
        if len(state.queue) == 1 and len(tab.instances) <= SCAN_MAX_INSTANCES:
            return self.decide_one(state)
        small = decide_small(tab, state)
        return decide_dense(tab, state) if small is None else small

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
        tab = self.tables
        (query,) = state.queue.values()
        now = state.now_s
        rows = tab.service.rows(query.batch_size)
        mean_s, tail_s = rows[0], rows[1]
        overhead = state.overhead_s
        qos_s, weights, overdue_s = tab.qos_s, tab.weights, tab.overdue_s
        deadline = query.arrival_s + qos_s
        live = deadline >= now
        ahead = deadline - now
        miss, near = (
            weights.miss_penalty_qos * qos_s,
            weights.slack_penalty_qos * qos_s,
        )
        guard = weights.safeguard_frac * qos_s
        idle, est_free, up, coeff = state.idle, state.est_free_s, state.up, tab.coeff_list
        best_j, best_cost, best_slack, any_savable = -1, math.inf, 0.0, False
        for j, t in enumerate(tab.type_list):
            if not up[j]:
                continue
            rem = 0.0 if j in idle else max(max(est_free[j] - now, 0.0), overdue_s)
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
        if tab.hold_doomed and live and any_savable and best_slack < 0.0:
            return []
        return [(query.qid, best_j)]

    def match(self, state: ClusterState) -> Matching:
        """Solve this decision's assignment (every pair, idle or busy instance)."""
        tab = self.tables
        up = tab.instances if all(state.up) else tab.instances[np.array(state.up, dtype=bool)]
        n_rows = min(len(state.queue), math.ceil(tab.window_factor * len(up)))
        if not self.plain:
            n_rows = min(n_rows, tab.max_queries)
        queries = state.head(n_rows)
        if n_rows == 0 or len(up) == 0:
            empty = np.zeros(0, dtype=np.int64)
            return Matching(queries, up, empty, empty, 0.0)
        remaining = remaining_s(tab, state, up)
        col_type = tab.inst_type[up]
        if not self.plain and n_rows * len(tab.coeff) < len(up):
            members = (
                tab.members
                if len(up) == len(tab.instances)
                else [np.flatnonzero(col_type == t) for t in range(len(tab.coeff))]
            )
            keep = candidate_columns(members, remaining, n_rows)
            up, remaining, col_type = up[keep], remaining[keep], col_type[keep]
        batches = np.fromiter((q.batch_size for q in queries), np.int64, n_rows)
        # The driver's transport delay (0 in simulation) is part of every finish estimate.
        est_s = tab.service.lookup("mean", batches) + state.overhead_s
        tail_s = (
            None
            if tab.slack_quantile is None
            else tab.service.lookup("tail", batches) + state.overhead_s
        )
        deadline_s = np.fromiter((q.arrival_s for q in queries), float, n_rows) + tab.qos_s
        cost = pair_costs(
            est_s,
            deadline_s,
            col_type,
            remaining,
            tab.coeff,
            state.now_s,
            tab.qos_s,
            tab.weights,
            tail_s,
        )
        hold = None
        if tab.urgency_frac is not None or tab.hold_doomed:
            slack = (deadline_s - state.now_s)[:, None] - (remaining[None, :] + est_s[:, col_type])
            live = deadline_s >= state.now_s
            if tab.urgency_frac is not None and n_rows > len(up):
                cost = (
                    cost
                    - urgency_bonus(
                        slack,
                        live,
                        tab.urgency_frac * tab.qos_s,
                        tab.weights.slack_penalty_qos * tab.qos_s,
                    )[:, None]
                )
        rows, cols = assign(cost)
        if tab.hold_doomed:
            savable = live & (slack.max(axis=1) >= 0.0)
            hold = savable[rows] & (slack[rows, cols] < 0.0)
        return Matching(queries, up, rows, cols, float(cost[rows, cols].sum()), hold)
