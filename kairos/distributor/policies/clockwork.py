"""Clockwork-style: each arriving query waits for the instance that would finish it first."""

from __future__ import annotations

import numpy as np

from kairos.distributor.base import register
from kairos.distributor.reservations import ReservingPolicy
from kairos.distributor.state import ClusterState
from kairos.workload import Query


@register
class Clockwork(ReservingPolicy):
    """Arrival order; a query goes to the up instance with the earliest estimated finish,
    counting the work already reserved on it (waiting for a busy instance is allowed).

    A query that cannot meet its deadline anywhere is still placed at its earliest finish and
    served (it counts as a violation; nothing is dropped). Ties go to the lowest index.
    """

    name = "clockwork"

    def place(self, query: Query, state: ClusterState) -> int:
        now = state.now_s
        free_s = np.maximum(np.array(state.est_free_s), now) + self.reserved_s
        finish = free_s + self.ctx.est_ms(query.batch_size)[self.inst_type] / 1000.0
        finish[~self.up_mask(state)] = np.inf
        return int(np.argmin(finish))
