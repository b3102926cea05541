"""Dense per-batch tables of a pool's service-time estimates, for the ``kairos`` policy.

``ServiceTables.lookup("mean", batches)`` is the ``[len(batches), types]`` array of mean
service times (s), read from the context's one cache of means (``PolicyContext.mean_ms``);
``"tail"`` reads the profile's ``slack_quantile`` instead, kept here in a dense table filled
on first use. ``rows(batch)`` gives the same values as plain float lists for the scans.
"""

from __future__ import annotations

import numpy as np

from kairos.distributor.base import BatchTable, PolicyContext


class ServiceTables:
    def __init__(self, ctx: PolicyContext, slack_quantile: float | None) -> None:
        self.ctx = ctx
        self.slack_quantile = slack_quantile
        self.n_types = len(ctx.type_names)
        self._tail = BatchTable(self.n_types, self._tail_s)  # [batch, type] tail (s)
        self._rows: dict[int, tuple[list[float], list[float] | None]] = {}

    def lookup(self, kind: str, batches: np.ndarray) -> np.ndarray:
        """Mean (or tail) service time (s) of each batch on each type, from a dense table."""
        if kind == "mean":
            return self.ctx.mean_ms(batches) / 1000.0
        return self._tail.rows(batches)

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
