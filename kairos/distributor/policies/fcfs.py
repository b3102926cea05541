"""First come, first served: the paper's naive baseline and RIBBON's distributor."""

from __future__ import annotations

from kairos.distributor.base import Decision, Policy, register
from kairos.distributor.state import ClusterState


@register
class FCFS(Policy):
    """Queue order, each query to the idle instance with the lowest index."""

    name = "fcfs"

    def decide(self, state: ClusterState) -> list[Decision]:
        idle = state.idle
        queue = state.queue
        if not idle or not queue:
            return []
        if len(idle) == 1 or len(queue) == 1:
            # The common case under load: one event frees one instance or adds one query.
            return [(next(iter(queue)), min(idle))]
        return list(zip(queue, sorted(idle), strict=False))
