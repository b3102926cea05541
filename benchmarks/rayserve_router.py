"""A Ray Serve request router that places each query with Kairos's per-query cost.

Ray Serve routes one request at a time: for each request its router offers the
deployment's replicas to ``choose_replicas``, which returns them in ranks of preference;
Ray Serve then sends the request to a replica of the first rank with a free slot, or, when
none is free, backs off and asks again. This router answers with the decision of Kairos's own
policy (``kairos`` from ``kairos.distributor``, unchanged) for a cluster of one queued query:
the replicas are the instances (each one's type from its node's label); a replica is busy
while it runs a query this router sent it (until that query's profiled mean service time has
passed) or while Ray Serve's queue-length cache says it runs one; the query's deadline is its
arrival at the ingress plus QoS; all in profile time (wall time over the replicas' time
scale). The policy either starts the query on an idle instance (the only rank returned) or
holds it, because the instance it should wait for is busy: the router then waits for a query
to complete (or for the next busy instance's estimated finish) and returns no rank, so Ray
Serve backs off 1 ms and asks again.

What it cannot do, by Ray Serve's design, is the matching itself: each request is decided
alone, so queued queries never compete for an instance in one assignment.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from ray.serve.request_router import PendingRequest, ReplicaID, RequestRouter, RunningReplica

from kairos.distributor import make_policy
from kairos.distributor.base import Policy, PolicyContext
from kairos.distributor.state import ClusterState
from kairos.scenario import Scenario
from kairos.workload import Query

LABEL = "kairos.io/instance-type"
COMPLETED_KEPT = 4096
STALE_QOS = 10.0


class KairosCostRouter(RequestRouter):
    """``request_router_kwargs``: ``model``, ``qos_ms``, ``time_scale`` (of the replay
    replicas); any other key is an option of the ``kairos`` policy."""

    def initialize_state(
        self,
        model: str = "dien",
        qos_ms: float | None = None,
        time_scale: float = 1.0,
        **policy_options: Any,
    ) -> None:
        self._scenario = Scenario.build(model, qos_ms=qos_ms)
        # The policy works in profile seconds; replicas sleep ``time_scale`` times longer.
        self._scale = time_scale if time_scale > 0 else 1.0
        self._stale_s = STALE_QOS * self._scenario.qos_ms / 1000.0
        self._policy_options = policy_options
        self._node_types: dict[str, str] = {}
        self._order: list[ReplicaID] = []
        self._types: tuple[str, ...] = ()
        self._policy: Policy | None = None
        # replica -> (accepted request's id, or None while tentative; est. free, profile s)
        self._running: dict[ReplicaID, tuple[str | None, float]] = {}
        self._completed: dict[str, None] = {}  # recent completed request ids, oldest first
        self._chosen_batch: dict[ReplicaID, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._max_hold_s = self._scenario.qos_ms / 1000.0 / 10.0  # profile seconds

    # --- the replica set ----------------------------------------------------------------------

    def update_replicas(self, replicas: list[RunningReplica]) -> None:
        super().update_replicas(replicas)
        self._rebuild()

    def _rebuild(self) -> None:
        """One policy per replica set: its instances are the replicas, in a fixed order."""
        replicas = list(self.curr_replicas.values())
        if any(r.node_id not in self._node_types for r in replicas):
            self._node_types = node_types()
        known = [r for r in replicas if r.node_id in self._node_types]
        self._order = [r.replica_id for r in known]
        self._types = tuple(self._node_types[r.node_id] for r in known)
        self._policy = None
        if self._types:
            ctx = PolicyContext(
                self._scenario.model, self._scenario.qos_ms, self._scenario.profiles, self._types
            )
            self._policy = make_policy("kairos", ctx, **self._policy_options)
        alive = set(self._order)
        self._running = {r: v for r, v in self._running.items() if r in alive}

    # --- one routing decision -----------------------------------------------------------------

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        batch = _batch_of(pending_request)
        if self._policy is None or batch is None:
            return [candidate_replicas]  # nothing to weigh: any free replica
        assert pending_request is not None
        now = self._now()
        state = self.cluster_state(now)
        state.enqueue(Query(0, pending_request.created_at / self._scale, batch))
        decisions = self._policy.decide(state)
        if not decisions:  # hold: the instance this query should wait for is busy
            await self._wait_for_change(now)
            return []
        chosen = self._order[decisions[0][1]]
        self._chosen_batch[chosen] = batch
        return [[self.curr_replicas[chosen]]]

    async def _wait_for_change(self, now: float) -> None:
        """Sleep until a query completes or the next busy instance is estimated free (at
        least QoS/20, at most QoS/10), so that a held query is not re-decided every back-off
        (1 ms) for nothing: that spinning costs more CPU than the routing itself."""
        loop = self._loop = asyncio.get_running_loop()
        soonest = min((until for _, until in self._running.values()), default=now) - now
        wait_s = min(max(soonest, self._max_hold_s / 2.0), self._max_hold_s) * self._scale
        change: asyncio.Future[None] = loop.create_future()
        self._waiters.append(change)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(change, wait_s)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def _now(self) -> float:
        """Profile seconds: wall time over the replicas' time scale (the router's clock)."""
        return time.time() / self._scale

    def cluster_state(self, now: float) -> ClusterState:
        """The replicas as Kairos's cluster state at ``now``: busy until their estimate.

        Busy also when Ray Serve's queue-length cache says the replica runs a query this
        router has no record of (its callbacks can arrive late or out of order): then due
        now. A query overdue by more than ``STALE_QOS`` x QoS is taken as lost news and its
        replica as free."""
        state = ClusterState(self._types)
        state.advance(now)
        lengths = self.replica_queue_len_cache
        for j, rid in enumerate(self._order):
            running = self._running.get(rid)
            if running is not None and running[1] < now - self._stale_s:
                del self._running[rid]
                running = None
            until = running[1] if running is not None else None
            if until is None and (lengths.get(rid) or 0) >= 1:
                until = now
            if until is not None:  # a placeholder query marks it busy until ``until``
                state.enqueue(Query(-1 - j, now, 1))
                state.start(-1 - j, j, until - now)
        return state

    # --- what Ray Serve tells the router ------------------------------------------------------

    def on_send_request(self, replica_id: ReplicaID) -> None:
        """A request is on its way to ``replica_id``: busy until its estimate (tentative until
        the replica accepts it, unless the replica already runs an accepted one)."""
        super().on_send_request(replica_id)
        batch = self._chosen_batch.pop(replica_id, None)
        if replica_id not in self._running:
            self._running[replica_id] = (None, self._now() + self._est_s(replica_id, batch))

    def on_request_routed(
        self, pending_request: PendingRequest, replica_id: ReplicaID, result: Any
    ) -> None:
        """The replica accepted the request: it is busy with it until its estimate (unless
        the request already completed: its callback may run first, on another thread)."""
        super().on_request_routed(pending_request, replica_id, result)
        request_id = pending_request.metadata.internal_request_id
        if request_id in self._completed:
            return
        until = self._now() + self._est_s(replica_id, _batch_of(pending_request))
        self._running[replica_id] = (request_id, until)

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        """Also called for a request the replica rejected (it was busy with another one):
        only the accepted request's completion, or a tentative one's, frees the replica."""
        super().on_request_completed(replica_id, internal_request_id)
        self._completed[internal_request_id] = None
        if len(self._completed) > COMPLETED_KEPT:
            del self._completed[next(iter(self._completed))]
        running = self._running.get(replica_id)
        if running is not None and running[0] in (None, internal_request_id):
            del self._running[replica_id]
        loop = self._loop
        if loop is not None and self._waiters and not loop.is_closed():  # any thread
            loop.call_soon_threadsafe(self._wake)

    def _est_s(self, replica_id: ReplicaID, batch: int | None) -> float:
        if self._policy is None or batch is None or replica_id not in self._order:
            return 0.0
        t = self._types[self._order.index(replica_id)]
        ctx = self._policy.ctx
        return ctx.est_s(ctx.type_names.index(t), batch)

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self._running.pop(replica_id, None)


def _batch_of(pending_request: PendingRequest | None) -> int | None:
    """The query's batch size: the first argument of the ingress's call."""
    if pending_request is None or not pending_request.args:
        return None
    try:
        return int(pending_request.args[0])
    except (TypeError, ValueError):
        return None


def node_types() -> dict[str, str]:
    """Node id -> instance type, from the nodes' ``kairos.io/instance-type`` labels."""
    import ray

    out = {}
    for node in ray.nodes():
        label = (node.get("Labels") or {}).get(LABEL)
        if node.get("Alive") and label:
            out[node["NodeID"]] = str(label)
    return out
