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
from bisect import bisect_left

import numpy as np

from kairos.distributor.base import Decision
from kairos.distributor.policies.kairos.matching import assign, candidate_columns, small_assignment
from kairos.distributor.policies.kairos.tables import KairosTables
from kairos.distributor.state import ClusterState
from kairos.workload import Query

# Pools up to this size decide a single queued query by a scan (see ``Kairos.decide_one``)
# and compute remaining times in plain floats; beyond it numpy's vector work is cheaper.
SCAN_MAX_INSTANCES = 64
# Decisions whose (pruned) matrix has at most this many entries build it in plain Python
# floats (``matching.small_assignment``); larger ones in numpy. Both give the same matrix.
SMALL_ENTRIES = 64


def remaining_s(tab: KairosTables, state: ClusterState, instances: np.ndarray) -> np.ndarray:
    """Time until free of each instance; overdue busy ones get a tiny positive value."""
    if len(instances) <= SCAN_MAX_INSTANCES:
        # Plain floats are cheaper here. ``r if r > overdue else overdue`` is the value of
        # ``max(max(r, 0.0), overdue)`` below (overdue > 0), with one comparison.
        now, idle, est, overdue = state.now_s, state.idle, state.est_free_s, tab.overdue_s
        if len(instances) == len(est):  # every instance (ids are 0..n-1): no gather
            return np.array(
                [
                    0.0 if j in idle else (r if (r := e - now) > overdue else overdue)
                    for j, e in enumerate(est)
                ]
            )
        return np.array(
            [
                0.0 if j in idle else (r if (r := est[j] - now) > overdue else overdue)
                for j in instances.tolist()
            ]
        )
    free_s = np.array(state.est_free_s)
    if len(instances) == len(free_s):  # every instance (ids are 0..n-1): no gather, and
        # the idle ones are zeroed in place (the same values as the masked ``where`` below).
        # In place in the fresh array; max(x, overdue) is max(max(x, 0), overdue) as
        # overdue > 0, so one maximum does.
        free_s -= state.now_s
        np.maximum(free_s, tab.overdue_s, out=free_s)
        free_s[list(state.idle)] = 0.0
        return free_s
    rem = np.maximum(free_s[instances] - state.now_s, 0.0)
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
    penalty ``where`` is folded into one, and skipped when every row is already late (each
    penalty would be zeroed); rows that need no bonus are left untouched instead of
    subtracting 0. Each of these leaves every float as ``match`` computes it. When every
    instance is up and none is pruned (small pools, and any pool whose window is long), the
    columns are the instances themselves and the service times come from one per-instance
    table (``ServiceTables.by_instance``). After the solve only the pairs on idle instances
    are examined (a start needs one; in overload there is one), in the same order.
    """
    up_flags = state.up
    all_up = False not in up_flags
    up = tab.instances if all_up else tab.instances[np.array(up_flags, dtype=bool)]
    n_rows = min(len(state.queue), math.ceil(tab.window_factor * len(up)), tab.max_queries)
    if n_rows == 0 or len(up) == 0:
        return []
    now = state.now_s
    queries = state.head(n_rows)
    batch_list = [q.batch_size for q in queries]
    remaining = remaining_s(tab, state, up)
    overhead = state.overhead_s
    arrivals = [q.arrival_s for q in queries]
    late = max(arrivals) + tab.qos_s < now
    if all_up and n_rows * len(tab.coeff) >= len(up):
        # The columns are the instances. ``by_instance`` returns a new array, so the finish
        # (and in a late window the cost) is computed in it, in place: ``est + overhead``,
        # then ``+ remaining`` and ``* c``: the same operations on the same operands as
        # below (IEEE addition and multiplication commute), without the temporaries.
        col_type, cc = tab.inst_type, tab.inst_coeff
        finish = tab.service.by_instance(batch_list)
        if overhead != 0.0:
            finish += overhead
        finish += remaining
    else:
        col_type = tab.inst_type if all_up else tab.inst_type[up]
        if n_rows * len(tab.coeff) < len(up):
            members = (
                tab.members
                if all_up
                else [np.flatnonzero(col_type == t) for t in range(len(tab.coeff))]
            )
            keep = candidate_columns(members, remaining, n_rows)
            up, remaining, col_type = up[keep], remaining[keep], col_type[keep]
        cc = tab.coeff[col_type]
        est = tab.service.lookup("mean", np.array(batch_list, dtype=np.int64)).take(col_type, 1)
        if overhead != 0.0:  # (x + 0.0 is x: skipping it changes no value)
            est = est + overhead
        finish = remaining + est
    if late:
        # Every query in the window is late (a long overload): no pair is penalised, no row
        # gets the urgency bonus and none is held, so the cost is the weighted finish alone
        # (``x + 0`` and ``x - 0`` are ``x``); the same matrix, the same solve. ``finish``
        # is not read again, so it becomes the cost in place.
        finish *= cc
        rows, cols = assign(finish)
        return _idle_starts(tab, state, queries, up, rows, cols, None, None, None)
    cost = cc * finish
    deadline_s = np.array(arrivals)
    deadline_s += tab.qos_s
    ahead = deadline_s - now
    slack = ahead[:, None] - finish
    live = deadline_s >= now
    w, qos = tab.weights, tab.qos_s
    pslack = slack
    if tab.slack_quantile is not None:
        tail_s = tab.service.lookup("tail", np.array(batch_list, dtype=np.int64)) + overhead
        pslack = ahead[:, None] - (remaining + tail_s[:, col_type])
    # Penalty level by bisection on (0, guard): slack < 0 -> miss, < guard -> near, else
    # 0; the same three floats the nested ``where`` of ``pair_costs`` picks.
    pen = tab.penalty_levels[tab.penalty_edges.searchsorted(pslack, side="right")]
    if not live[0]:  # the oldest query is late: some rows get no penalty
        pen[~live] = 0.0
    cost += pen
    n_cols = len(up)
    best = None
    if tab.urgency_frac is not None and n_rows > n_cols:
        best = slack.max(axis=1)
        # A live row whose best slack is in [0, urgency_frac * QoS) gets the bonus (see
        # ``urgency_bonus``; the band's bound is the float ``urgency_edges`` holds). Found
        # on plain floats: a few dozen rows cost less than four array operations.
        band = float(tab.urgency_edges[1])
        live_list = live.tolist()
        urgent = [i for i, b in enumerate(best.tolist()) if 0.0 <= b < band and live_list[i]]
        if urgent:
            cost[urgent] -= w.slack_penalty_qos * qos
    rows, cols = assign(cost)
    return _idle_starts(tab, state, queries, up, rows, cols, slack, live, best)


def _idle_starts(
    tab: KairosTables,
    state: ClusterState,
    queries: list[Query],
    up: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    slack: np.ndarray | None,
    live: np.ndarray | None,
    best: np.ndarray | None,
) -> list[Decision]:
    """The matched pairs on idle instances that are not held, in the solver's pair order.

    A pair is held (``hold_doomed``) when its query is live and could make its deadline on
    some column (best slack >= 0) but not on its own: the test ``match`` applies to every
    pair, applied here only to the pairs that could start, with the same floats. ``live``
    None: every query is late, so none is held.
    """
    idle = state.idle
    col_list = cols.tolist()
    every = len(up) == len(tab.instances)  # the columns are the instances: column c is c
    inst = None if every else up.tolist()
    if len(idle) * 8 < len(col_list):
        # Few idle instances (overload): find their pairs instead of walking every pair.
        # The columns are in ascending instance order, so an idle instance's column is
        # found by bisection.
        found = []
        for j in idle:
            c = j if inst is None else bisect_left(inst, j)
            if (inst is None or c < len(inst) and inst[c] == j) and c in col_list:
                found.append(col_list.index(c))
        pairs = sorted(found)
    elif inst is None:
        pairs = [k for k, c in enumerate(col_list) if c in idle]
    else:
        pairs = [k for k, c in enumerate(col_list) if inst[c] in idle]
    if not pairs:
        return []
    row_list = rows.tolist()
    hold = tab.hold_doomed and live is not None and slack is not None
    out = []
    for k in pairs:
        r, c = row_list[k], col_list[k]
        j = c if inst is None else inst[c]
        if hold and live is not None and slack is not None and live[r] and slack[r, c] < 0.0:
            b = best[r] if best is not None else slack[r].max()
            if b >= 0.0:
                continue
        out.append((queries[r].qid, j))
    return out
