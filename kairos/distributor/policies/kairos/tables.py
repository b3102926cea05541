"""Dense per-batch tables of a pool's service-time estimates, for the ``kairos`` policy.

``ServiceTables.lookup("mean", batches)`` is the ``[len(batches), types]`` array of mean
service times (s), read from the context's one cache of means (``PolicyContext.mean_ms``);
``"tail"`` reads the profile's ``slack_quantile`` instead, kept here in a dense table filled
on first use. ``rows(batch)`` gives the same values as plain float lists for the scans.

``KairosTables`` is everything else a decision reads besides the live state, fixed when the
policy is built (the pool's types and coefficients, the options). The policy builds one and
hands it to its fast paths (``fast_paths``), which therefore never see the policy object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kairos.distributor.base import BatchTable, PolicyContext
from kairos.distributor.policies.kairos.matching import OVERDUE_EPS_QOS, MatchWeights


class ServiceTables:
    def __init__(self, ctx: PolicyContext, slack_quantile: float | None) -> None:
        self.ctx = ctx
        self.slack_quantile = slack_quantile
        self.n_types = len(ctx.type_names)
        self._tail = BatchTable(self.n_types, self._tail_s)  # [batch, type] tail (s)
        self._rows: dict[int, tuple[list[float], list[float] | None]] = {}
        index = {t: k for k, t in enumerate(ctx.type_names)}
        self._inst_type = np.array([index[t] for t in ctx.instance_types], dtype=np.int64)
        # [batch, instance] mean service time (s) on each instance's type, rows filled as
        # batch sizes are first seen (``_known``); the dense path reads it with one gather.
        self._by_instance = np.zeros((0, len(ctx.instance_types)))
        self._known: set[int] = set()

    def lookup(self, kind: str, batches: np.ndarray) -> np.ndarray:
        """Mean (or tail) service time (s) of each batch on each type, from a dense table."""
        if kind == "mean":
            return self.ctx.mean_ms(batches) / 1000.0
        return self._tail.rows(batches)

    def by_instance(self, batches: list[int]) -> np.ndarray:
        """``[len(batches), instances]``: ``lookup("mean", batches)[:, instance types]``.

        The same floats (a gather of the same quotients), read from a table kept per
        instance so a decision over every instance needs one fancy index instead of two.
        """
        if not self._known.issuperset(batches):
            todo = sorted(set(batches) - self._known)
            table = self._by_instance
            if todo[-1] >= len(table):
                grown = np.zeros((max(todo[-1] + 1, 2 * len(table)), table.shape[1]))
                grown[: len(table)] = table
                self._by_instance = table = grown
            b = np.array(todo, dtype=np.int64)
            table[b] = self.lookup("mean", b)[:, self._inst_type]
            self._known.update(todo)
        return self._by_instance.take(batches, axis=0)  # (``take``: fancy indexing's copy, cheaper)

    def rows(self, batch: int) -> tuple[list[float], list[float] | None]:
        """``(mean per type, tail per type or None)`` of one batch size, as float lists."""
        got = self._rows.get(batch)
        if got is None:
            b = np.array([batch], dtype=np.int64)
            mean = self.ctx.est_s_list(batch)
            tail = None if self.slack_quantile is None else self.lookup("tail", b)[0].tolist()
            got = self._rows[batch] = (mean, tail)
        return got

    def _tail_s(self, batches: np.ndarray) -> np.ndarray:
        profiles = self.ctx.profiles
        q = float(self.slack_quantile or 0.0)
        return np.array(
            [
                np.array([profiles.get(t).quantile_ms(b, q) for t in self.ctx.type_names]) / 1000.0
                for b in batches.tolist()
            ]
        )


@dataclass(frozen=True, eq=False, slots=True)
class KairosTables:
    """One pool's decision tables and the policy's options, as the decision paths read them.

    ``inst_type[j]`` is instance ``j``'s type index, ``coeff[t]`` type ``t``'s heterogeneity
    coefficient (``inst_coeff[j]`` instance ``j``'s), ``members[t]`` the ids of type
    ``t``'s instances; ``type_list`` and ``coeff_list`` are the same values as plain
    numbers for the scans. ``overdue_s`` is the remaining time given to a busy instance
    past its estimate (a tiny positive value).
    ``penalty_edges`` and ``penalty_levels`` give a pair's penalty from its slack by
    bisection (below 0: miss, below the safeguard: slack penalty, else 0), and
    ``urgency_edges`` the urgency band ``[0, urgency_frac * QoS)`` the same way.
    """

    window_factor: float
    max_queries: int
    weights: MatchWeights
    slack_quantile: float | None
    urgency_frac: float | None
    hold_doomed: bool
    qos_s: float
    overdue_s: float
    coeff: np.ndarray
    inst_type: np.ndarray
    inst_coeff: np.ndarray
    instances: np.ndarray
    members: tuple[np.ndarray, ...]
    penalty_edges: np.ndarray
    penalty_levels: np.ndarray
    urgency_edges: np.ndarray
    type_list: tuple[int, ...]
    coeff_list: tuple[float, ...]
    service: ServiceTables

    @classmethod
    def build(
        cls,
        ctx: PolicyContext,
        *,
        window_factor: float,
        max_queries: int,
        weights: MatchWeights,
        slack_quantile: float | None,
        urgency_frac: float | None,
        hold_doomed: bool,
    ) -> KairosTables:
        types = ctx.type_names
        coeffs = ctx.profiles.heterogeneity(types)
        coeff = np.array([coeffs[t] for t in types])
        index = {t: k for k, t in enumerate(types)}
        inst_type = np.array([index[t] for t in ctx.instance_types], dtype=np.int64)
        return cls(
            window_factor=window_factor,
            max_queries=max_queries,
            weights=weights,
            slack_quantile=slack_quantile,
            urgency_frac=urgency_frac,
            hold_doomed=hold_doomed,
            qos_s=ctx.qos_s,
            overdue_s=OVERDUE_EPS_QOS * ctx.qos_s,
            coeff=coeff,
            inst_type=inst_type,
            inst_coeff=coeff[inst_type],
            instances=np.arange(len(ctx.instance_types), dtype=np.int64),
            members=tuple(np.flatnonzero(inst_type == t) for t in range(len(types))),
            # Slack below 0: miss penalty; below the safeguard: slack penalty; else none.
            penalty_edges=np.array([0.0, weights.safeguard_frac * ctx.qos_s]),
            penalty_levels=np.array(
                [weights.miss_penalty_qos * ctx.qos_s, weights.slack_penalty_qos * ctx.qos_s, 0.0]
            ),
            urgency_edges=np.array(
                [0.0, (urgency_frac if urgency_frac is not None else 0.0) * ctx.qos_s]
            ),
            type_list=tuple(inst_type.tolist()),
            coeff_list=tuple(coeff.tolist()),
            service=ServiceTables(ctx, slack_quantile),
        )
