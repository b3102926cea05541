"""The ``kairos`` policy's fast decision paths: the same decisions as ``Kairos.match``, cheaper.

Every path builds exactly the matrix ``Kairos.match`` builds (same columns after the same
pruning, same rows, same float operations in the same order) and hands it to the same
assignment solver, so the pairs it starts are identical, instance for instance; a test
replays simulations against a frozen copy of the implementation these replaced
(tests/distributor/test_kairos.py). They differ only in how they build it:

- ``decide_small``: matrices of at most ``SMALL_ENTRIES`` entries in plain Python floats
  (``matching.small_assignment``), where numpy's per-call cost would dominate;
- ``decide_dense``: larger ones in numpy with fewer array operations (the mean-based slack is
  computed once and shared; steps that would add or subtract 0 are skipped).

A single queued query on a small pool is decided by ``Kairos.decide_one``'s scan. The paths
read the policy's frozen ``KairosTables`` (``tables``), never the policy object itself.
"""

from __future__ import annotations

import math

import numpy as np

from kairos.distributor.base import Decision
from kairos.distributor.policies.kairos.matching import assign, candidate_columns, small_assignment
from kairos.distributor.policies.kairos.tables import KairosTables
from kairos.distributor.state import ClusterState

# Pools up to this size decide a single queued query by a scan (see ``Kairos.decide_one``)
# and compute remaining times in plain floats; beyond it numpy's vector work is cheaper.
SCAN_MAX_INSTANCES = 64
# Decisions whose (pruned) matrix has at most this many entries build it in plain Python
# floats (``matching.small_assignment``); larger ones in numpy. Both give the same matrix.
SMALL_ENTRIES = 64


def remaining_s(tab: KairosTables, state: ClusterState, instances: np.ndarray) -> np.ndarray:
    """Time until free of each instance; overdue busy ones get a tiny positive value."""
    if len(instances) <= SCAN_MAX_INSTANCES:
        # Plain floats are cheaper here; the same max() operations as below.
        now, idle, est, overdue = state.now_s, state.idle, state.est_free_s, tab.overdue_s
        return np.array(
            [0.0 if j in idle else max(max(est[j] - now, 0.0), overdue) for j in instances.tolist()]
        )
    free_s = np.array(state.est_free_s)[instances]
    rem = np.maximum(free_s - state.now_s, 0.0)
    busy = np.ones(len(state.est_free_s), dtype=bool)
    busy[list(state.idle)] = False
    return np.where(busy[instances], np.maximum(rem, tab.overdue_s), 0.0)


def decide_small(tab: KairosTables, state: ClusterState) -> list[Decision] | None:
    """``decide_matching`` for a small matrix, in plain floats; None when it is large.

    Columns, rows and every cost are those of ``match`` (the same pruning, the same
    order, the same float operations), so the assignment and the decision are identical.
    """
    n_all, n_types = len(tab.instances), len(tab.coeff)
    all_up = all(state.up)
    n_up = n_all if all_up else sum(state.up)
    n_rows = min(len(state.queue), math.ceil(tab.window_factor * n_up), tab.max_queries)
    if n_up == 0 or n_rows == 0 or n_rows * min(n_up, n_rows * n_types) > SMALL_ENTRIES:
        return None
    types = tab.type_list
    up, rem_list = _small_columns(tab, state, n_rows, all_up)
    now, idle = state.now_s, state.idle
    queries = state.head(n_rows)
    overhead = state.overhead_s
    rows = [tab.service.rows(q.batch_size) for q in queries]
    est = [[m + overhead for m in row[0]] for row in rows]
    tail = (
        None
        if tab.slack_quantile is None
        else [[x + overhead for x in row[1] or ()] for row in rows]
    )
    pairs = small_assignment(
        est,
        tail,
        [q.arrival_s + tab.qos_s for q in queries],
        now,
        [types[j] for j in up],
        rem_list,
        tab.coeff_list,
        tab.qos_s,
        tab.weights,
        None if tab.urgency_frac is None else tab.urgency_frac * tab.qos_s,
        tab.hold_doomed,
    )
    return [(queries[r].qid, up[c]) for r, c in pairs if up[c] in idle]


def _small_columns(
    tab: KairosTables, state: ClusterState, n_rows: int, all_up: bool
) -> tuple[list[int], list[float]]:
    """The columns ``match`` would use (instance ids, ascending) and their remaining times."""
    n_all, n_types, types = len(tab.instances), len(tab.coeff), tab.type_list
    if n_all > SCAN_MAX_INSTANCES:
        # Many instances, few columns: find them with numpy as ``match`` does.
        inst = tab.instances if all_up else tab.instances[np.array(state.up, dtype=bool)]
        remaining = remaining_s(tab, state, inst)
        if n_rows * n_types < len(inst):
            col_type = tab.inst_type[inst]
            members = (
                tab.members if all_up else [np.flatnonzero(col_type == t) for t in range(n_types)]
            )
            keep = candidate_columns(members, remaining, n_rows)
            inst, remaining = inst[keep], remaining[keep]
        return inst.tolist(), remaining.tolist()
    up = list(range(n_all)) if all_up else [j for j in range(n_all) if state.up[j]]
    now, idle, est_free, overdue = state.now_s, state.idle, state.est_free_s, tab.overdue_s
    rem = {j: 0.0 if j in idle else max(max(est_free[j] - now, 0.0), overdue) for j in up}
    if n_rows * n_types < len(up):
        chosen: list[int] = []
        for t in range(n_types):
            of_type = [j for j in up if types[j] == t]
            chosen.extend(sorted(of_type, key=rem.__getitem__)[:n_rows])  # stable, as argsort
        up = sorted(chosen)
    return up, [rem[j] for j in up]


def decide_dense(tab: KairosTables, state: ClusterState) -> list[Decision]:
    """``decide_matching`` with fewer array operations (the same matrix, bit for bit).

    The mean-based slack is computed once and shared by the penalty (unless the
    safeguard reads a tail quantile), the urgency bonus and the hold test; the nested
    penalty ``where`` is folded into one; rows that need no bonus are left untouched
    instead of subtracting 0. Each of these leaves every float as ``match`` computes it.
    """
    all_up = all(state.up)
    up = tab.instances if all_up else tab.instances[np.array(state.up, dtype=bool)]
    n_rows = min(len(state.queue), math.ceil(tab.window_factor * len(up)), tab.max_queries)
    if n_rows == 0 or len(up) == 0:
        return []
    now = state.now_s
    remaining = remaining_s(tab, state, up)
    col_type = tab.inst_type if all_up else tab.inst_type[up]
    if n_rows * len(tab.coeff) < len(up):
        members = (
            tab.members
            if all_up
            else [np.flatnonzero(col_type == t) for t in range(len(tab.coeff))]
        )
        keep = candidate_columns(members, remaining, n_rows)
        up, remaining, col_type = up[keep], remaining[keep], col_type[keep]
    queries = state.head(n_rows)
    batches = np.array([q.batch_size for q in queries], dtype=np.int64)
    overhead = state.overhead_s
    est_s = tab.service.lookup("mean", batches)
    if overhead != 0.0:  # (x + 0.0 is x: skipping it changes no value)
        est_s = est_s + overhead
    deadline_s = np.array([q.arrival_s for q in queries]) + tab.qos_s
    ahead = deadline_s - now
    finish = remaining[None, :] + est_s[:, col_type]
    cost = tab.coeff[col_type][None, :] * finish
    slack = ahead[:, None] - finish
    pslack = slack
    if tab.slack_quantile is not None:
        tail_s = tab.service.lookup("tail", batches) + state.overhead_s
        pslack = ahead[:, None] - (remaining[None, :] + tail_s[:, col_type])
    w, qos = tab.weights, tab.qos_s
    pen = np.where(
        pslack < w.safeguard_frac * qos,
        np.where(pslack < 0.0, w.miss_penalty_qos * qos, w.slack_penalty_qos * qos),
        0.0,
    )
    live = deadline_s >= now
    # The queue is in arrival order, so the first query has the earliest deadline.
    if deadline_s[0] < now:
        pen[~live] = 0.0
    cost += pen
    best = slack.max(axis=1)
    if tab.urgency_frac is not None and n_rows > len(up):
        urgent = live & (best >= 0.0) & (best < tab.urgency_frac * qos)
        if urgent.any():
            cost[urgent] -= w.slack_penalty_qos * qos
    rows, cols = assign(cost)
    held = (
        (live & (best >= 0.0))[rows] & (slack[rows, cols] < 0.0)
        if tab.hold_doomed
        else np.zeros(len(rows), dtype=bool)
    )
    idle, inst = state.idle, up.tolist()
    return [
        (queries[r].qid, inst[c])
        for r, c, h in zip(rows.tolist(), cols.tolist(), held.tolist(), strict=True)
        if not h and inst[c] in idle
    ]
