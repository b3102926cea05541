"""The KAIROS QoS-aware matching: cost matrix and min-cost assignment of queries to instances.

For queued query ``i`` (batch ``b_i``, deadline ``d_i = arrival_i + QoS``) and instance ``j``
(type ``t_j``, estimated time until free ``r_j``) at time ``now``::

    finish_ij = r_j + est(t_j, b_i)                       (profile mean, seconds)
    cost_ij   = c_{t_j} * finish_ij + penalty_ij
    slack_ij  = d_i - (now + finish_ij)
    penalty_ij = miss_penalty   if now <= d_i and slack_ij < 0
               = slack_penalty  if now <= d_i and 0 <= slack_ij < safeguard
               = 0              otherwise (enough slack, or the query is already late)

``c_t`` is the heterogeneity coefficient (base type 1, slower types less). Penalties and the
safeguard are multiples of the QoS target, so the matching behaves the same at 5 ms and 350 ms.

The module is pure (arrays in, arrays out) so the plain and the fast path can be compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from kairos.errors import ConfigError

# A busy instance whose estimated finish has passed is treated as freeing up this long from
# now (as a fraction of QoS), so an idle instance of the same type always wins the tie.
OVERDUE_EPS_QOS = 1e-9


@dataclass(frozen=True)
class MatchWeights:
    """Penalty scale of the matching, every figure a multiple of the QoS target.

    The defaults make the penalties lexicographic: a non-penalised pair costs at most
    ``c * finish <= QoS`` (it finishes before the deadline, at most one QoS away), and
    ``slack_penalty_qos`` exceeds what rearranging the pairs of one decision can save (each
    pair's weighted finish is a few QoS at most, and there are at most ``2N`` pairs), so for
    pools up to a few thousand instances the matching first minimises deadline misses, then
    near misses, and only then the weighted finish time.
    """

    safeguard_frac: float = 0.02
    slack_penalty_qos: float = 1e4
    miss_penalty_qos: float = 1e6

    def __post_init__(self) -> None:
        if not 0.0 <= self.safeguard_frac < 1.0:
            raise ConfigError(
                f"safeguard fraction {self.safeguard_frac!r} is not in [0, 1).",
                "pass safeguard_frac such as 0.02 (2% of QoS).",
            )
        if not 0.0 <= self.slack_penalty_qos <= self.miss_penalty_qos:
            raise ConfigError(
                f"penalties slack={self.slack_penalty_qos!r} miss={self.miss_penalty_qos!r} "
                "are not 0 <= slack <= miss.",
                "give a miss penalty at least as large as the slack penalty.",
            )


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
    members: Sequence[np.ndarray], remaining_s: np.ndarray, n_queries: int
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
            # The n soonest, ties to the lower position: what a stable argsort's first n
            # are, found by selection (linear) instead of a sort. Every instance strictly
            # sooner than the n-th smallest time, then the lowest-placed at that time.
            rem = remaining_s[idx]
            kth = np.partition(rem, n_queries - 1)[n_queries - 1]
            sooner = rem < kth
            tied = np.flatnonzero(rem == kth)[: n_queries - int(np.count_nonzero(sooner))]
            sooner[tied] = True
            idx = idx[sooner]
        keep.append(idx)
    return np.sort(np.concatenate(keep))


def small_costs(
    est: list[list[float]],
    tail: list[list[float]] | None,
    deadline: list[float],
    now_s: float,
    col_type: list[int],
    col_rem: list[float],
    coeff: Sequence[float],
    qos_s: float,
    weights: MatchWeights,
) -> tuple[list[list[float]], list[list[float]]]:
    """``pair_costs`` in plain Python floats for small matrices, and the mean-based slack.

    ``est[i][t]`` (and ``tail``) already include the driver's overhead. Every entry is
    computed with the same float operations in the same order as ``pair_costs`` (and as the
    slack the policy derives from it), so the matrix is identical bit for bit and the
    assignment solver returns the same pairs; on a handful of rows and columns this avoids
    numpy's per-call cost, which dominates there. Returns ``(cost[i][j], slack[i][j])`` with
    ``slack = (deadline - now) - (rem + est)``.
    """
    miss = weights.miss_penalty_qos * qos_s
    near = weights.slack_penalty_qos * qos_s
    guard = weights.safeguard_frac * qos_s
    cols = list(zip(col_type, col_rem, [coeff[t] for t in col_type], strict=True))
    costs: list[list[float]] = []
    slacks: list[list[float]] = []
    for i, row in enumerate(est):
        a = deadline[i] - now_s
        live = deadline[i] >= now_s
        trow = tail[i] if tail is not None else None
        crow: list[float] = []
        srow: list[float] = []
        for t, r, c in cols:
            finish = r + row[t]
            cost = c * finish
            slack = a - finish
            if live:
                s = slack if trow is None else a - (r + trow[t])
                if s < 0.0:
                    cost = cost + miss
                elif s < guard:
                    cost = cost + near
            crow.append(cost)
            srow.append(slack)
        costs.append(crow)
        slacks.append(srow)
    return costs, slacks


def small_assignment(
    est: list[list[float]],
    tail: list[list[float]] | None,
    deadline: list[float],
    now_s: float,
    col_type: list[int],
    col_rem: list[float],
    coeff: Sequence[float],
    qos_s: float,
    weights: MatchWeights,
    urgency_s: float | None,
    hold_doomed: bool,
) -> list[tuple[int, int]]:
    """The matched ``(row, column)`` pairs of a small decision that are not held.

    The Python twin of the policy's numpy path (``pair_costs``, ``urgency_bonus``, ``assign``
    and the hold test), operation for operation: an urgency bonus per row when rows outnumber
    columns, then the assignment, then a matched pair is held when the row could still make
    its deadline somewhere (``max slack >= 0``, live) but not on its matched column.
    """
    cost, slack = small_costs(est, tail, deadline, now_s, col_type, col_rem, coeff, qos_s, weights)
    best = [max(row) for row in slack] if slack and slack[0] else [0.0] * len(slack)
    live = [d >= now_s for d in deadline]
    if urgency_s is not None and len(est) > len(col_type):
        bonus = weights.slack_penalty_qos * qos_s
        for i, row in enumerate(cost):
            if live[i] and 0.0 <= best[i] < urgency_s:
                cost[i] = [c - bonus for c in row]
    rows, cols = assign(np.array(cost))
    out = []
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        if hold_doomed and live[r] and best[r] >= 0.0 and slack[r][c] < 0.0:
            continue
        out.append((r, c))
    return out
