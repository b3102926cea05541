"""Policies that route each query to one instance on arrival (Clockwork, SkyServe, Ray Serve).

Such a policy keeps a FIFO of reserved queries per instance and starts an instance's oldest
reservation whenever that instance is idle. The state stays the single source of truth:
before deciding, the reservations are reconciled with it, so

* a query the state re-queued (its instance went down mid-service) is placed again,
* the reservations of an instance marked down (``state.up[j]`` False) are placed again,
* a reserved query that is no longer queued is forgotten,

and a query is never lost or started twice whatever the driver does.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import deque
from typing import Any

import numpy as np

from kairos.distributor.base import Decision, Policy, PolicyContext
from kairos.distributor.state import ClusterState
from kairos.workload import Query


class ReservingPolicy(Policy):
    """Base class: subclasses implement ``place`` (which up instance a new query waits for)."""

    def __init__(self, ctx: PolicyContext, **options: Any) -> None:
        super().__init__(ctx, **options)
        n = len(ctx.instance_types)
        index = {t: k for k, t in enumerate(ctx.type_names)}
        self.inst_type = np.array([index[t] for t in ctx.instance_types], dtype=np.int64)
        self.reserved: list[deque[Query]] = [deque() for _ in range(n)]
        self.reserved_count = np.zeros(n, dtype=np.int64)
        self.reserved_s = np.zeros(n)  # estimated service time of the reservations, summed
        self._where: dict[int, int] = {}  # qid -> instance it waits for
        self._holding: set[int] = set()  # instances with at least one reservation

    @abstractmethod
    def place(self, query: Query, state: ClusterState) -> int:
        """The up instance ``query`` should wait for (``state`` has at least one up)."""

    # --- events -----------------------------------------------------------------------------

    def on_arrival(self, query: Query, state: ClusterState) -> None:
        if any(state.up):
            self._reserve(query, self.place(query, state))

    def decide(self, state: ClusterState) -> list[Decision]:
        self._reconcile(state)
        ready = self._holding & state.idle
        if not ready:
            return []
        out: list[Decision] = []
        for j in sorted(ready):
            query = self._pop(j)
            out.append((query.qid, j))
        return out

    # --- bookkeeping ------------------------------------------------------------------------

    def up_mask(self, state: ClusterState) -> np.ndarray:
        return np.array(state.up, dtype=bool)

    def busy_mask(self, state: ClusterState) -> np.ndarray:
        """True for instances serving a query now."""
        busy = np.array(state.up, dtype=bool)
        busy[list(state.idle)] = False
        return busy

    def _reserve(self, query: Query, j: int) -> None:
        self.reserved[j].append(query)
        self.reserved_count[j] += 1
        self.reserved_s[j] += self.ctx.est_ms(query.batch_size)[self.inst_type[j]] / 1000.0
        self._where[query.qid] = j
        self._holding.add(j)

    def _pop(self, j: int) -> Query:
        query = self.reserved[j].popleft()
        self._forget(query, j)
        return query

    def _forget(self, query: Query, j: int) -> None:
        del self._where[query.qid]
        self.reserved_count[j] -= 1
        if self.reserved[j]:
            self.reserved_s[j] -= self.ctx.est_ms(query.batch_size)[self.inst_type[j]] / 1000.0
        else:
            self.reserved_s[j] = 0.0  # reset so float drift cannot build up
            self._holding.discard(j)

    def _reconcile(self, state: ClusterState) -> None:
        """Bring the reservations in line with the state (see the module docstring)."""
        orphans: list[Query] = []
        for j in [j for j in self._holding if not state.up[j]]:
            while self.reserved[j]:
                orphans.append(self._pop(j))
        queue = state.queue
        if len(self._where) + len(orphans) != len(queue) or any(
            q.qid not in queue for q in orphans
        ):
            orphans = self._resync(state)
        if orphans and any(state.up):
            for query in sorted(orphans, key=lambda q: (q.arrival_s, q.qid)):
                self._reserve(query, self.place(query, state))

    def _resync(self, state: ClusterState) -> list[Query]:
        """Slow path: drop reservations of unqueued queries; return queued unplaced ones."""
        queue = state.queue
        for j in list(self._holding):
            stale = [q for q in self.reserved[j] if q.qid not in queue]
            for query in stale:
                self.reserved[j].remove(query)
                self._forget(query, j)
        return [q for q in queue.values() if q.qid not in self._where]
