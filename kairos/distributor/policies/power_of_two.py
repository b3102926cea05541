"""Ray Serve's default router: sample two instances, send the query to the less loaded."""

from __future__ import annotations

from kairos.distributor.base import register
from kairos.distributor.reservations import ReservingPolicy
from kairos.distributor.state import ClusterState
from kairos.workload import Query


@register
class PowerOfTwo(ReservingPolicy):
    """Two distinct up instances drawn with ``ctx.rng``; the query waits for the one with
    fewer in-flight plus reserved queries (the first drawn on a tie). Type-blind, as Ray is."""

    name = "power-of-two"

    def place(self, query: Query, state: ClusterState) -> int:
        up = [j for j, ok in enumerate(state.up) if ok] if not all(state.up) else None
        n = len(up) if up is not None else state.n_instances
        picks = [0] if n == 1 else self.ctx.rng.choice(n, size=2, replace=False).tolist()
        cands = [up[k] for k in picks] if up is not None else picks
        idle = state.idle
        load = [int(self.reserved_count[j]) + (j not in idle) for j in cands]
        return cands[1] if load[1:] and load[1] < load[0] else cands[0]
