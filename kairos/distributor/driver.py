"""The driver: the one place that applies a policy's decisions to the cluster state.

The simulator, the live router and the policy tests all hold a ``Driver`` and feed it the
same four events: a query arrived, an instance finished its query, an instance went down, an
instance came (back) up. Each event sets the clock, updates the ``ClusterState``, tells the
policy (``on_arrival`` / ``on_finish``), asks it to ``decide`` and applies every decision with
``state.start``, which checks it. The event returns the decisions it applied, ``(qid,
instance)`` pairs, for the caller to carry out (schedule a simulated completion, or send the
query to a worker). Nothing else moves the clock or starts a query, so a query follows the
same path, method for method, in simulation and live.

Randomness is injected here too: ``seed_streams(seed)`` splits one seed into the service-time
stream (the simulator's draws) and the policy's stream, and the driver always gives the
policy the second one, so a seeded run of a randomised policy (``power-of-two``) makes the
same choices in the simulator and in the router.

Resizing (``add_instances`` / ``retire``) keeps instance ids stable: new instances get new
ids at the end and start down (the runtime marks them up once their worker answers); a
retired instance takes no new query, finishes the one it serves, and its id is never reused.
The policy is rebuilt on the new instance list at once, with the same random stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from kairos.distributor.base import Decision, Policy, PolicyContext, make_policy
from kairos.distributor.state import ClusterState
from kairos.errors import PolicyError
from kairos.scenario import Scenario
from kairos.workload import Query

PolicyFactory = Callable[[PolicyContext], Policy]


def seed_streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent (service-time, policy) generators derived from one seed."""
    service, policy = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(service), np.random.default_rng(policy)


class Driver:
    """Owns the cluster state, the policy, its context and the seeded streams.

    ``policy`` is a registered name (with ``policy_options``) or a factory taking the
    context. ``start_down=True`` marks every instance down at first (the live router: an
    instance takes queries once its worker is connected).
    """

    def __init__(
        self,
        scenario: Scenario,
        instance_types: Sequence[str],
        policy: str | PolicyFactory,
        *,
        seed: int = 0,
        policy_options: Mapping[str, Any] | None = None,
        start_down: bool = False,
    ) -> None:
        self.scenario = scenario
        self.service_rng, self._policy_rng = seed_streams(seed)
        self._policy_spec = policy
        self._policy_options = dict(policy_options or {})
        self.retired: set[int] = set()
        self.state = ClusterState(tuple(instance_types))
        self.ctx, self.policy = self._make_policy(self.state.instance_type)
        if start_down:
            for j in range(self.state.n_instances):
                self.state.mark_down(j)

    def _make_policy(self, types: tuple[str, ...]) -> tuple[PolicyContext, Policy]:
        s = self.scenario
        ctx = PolicyContext(s.model, s.qos_ms, s.profiles, types, self._policy_rng)
        spec = self._policy_spec
        pol = make_policy(spec, ctx, **self._policy_options) if isinstance(spec, str) else spec(ctx)
        return ctx, pol

    # --- events -----------------------------------------------------------------------------

    def arrive(self, query: Query, now_s: float) -> Sequence[Decision]:
        """``query`` entered the queue at ``now_s``."""
        state = self.state
        state.advance(now_s)
        state.enqueue(query)
        self.policy.on_arrival(query, state)
        return self._decide()

    def complete(
        self, instance: int, now_s: float, then: Callable[[Query], None] | None = None
    ) -> tuple[Query, Sequence[Decision]]:
        """``instance`` finished its query at ``now_s``; returns that query and new starts.

        ``then(query)`` runs after the state and the policy know, before the next decision
        (the router answers the client there, so a decision does not delay the answer).
        """
        state = self.state
        state.advance(now_s)
        query = state.finish(instance)
        self.policy.on_finish(query, instance, state)
        if then is not None:
            then(query)
        return query, self._decide()

    def down(
        self, instance: int, now_s: float, keep: bool = True
    ) -> tuple[Query | None, Sequence[Decision]]:
        """``instance`` failed; the query it served (returned) goes back to the queue, or
        with ``keep=False`` is dropped (the runtime failed it) before the next decision. A
        retired instance still finishing its query loses it the same way."""
        state = self.state
        state.advance(now_s)
        query = None
        if state.up[instance] or state.running[instance] is not None:
            query = state.mark_down(instance)
        if query is not None and not keep:
            state.withdraw(query.qid)
        return query, self._decide()

    def up(self, instance: int, now_s: float) -> Sequence[Decision]:
        """``instance`` is (back) in service. A retired instance stays out."""
        state = self.state
        state.advance(now_s)
        if instance not in self.retired and not state.up[instance]:
            state.mark_up(instance)
        return self._decide()

    def requeue(self, query: Query, now_s: float) -> None:
        """Put back a query the runtime had released its instance from (``complete`` came
        before its answer: the live router's pipelining) and then lost with that instance.
        No decision: the event that follows (``down``) decides with it queued."""
        self.state.advance(now_s)
        self.state.requeue(query)

    def withdraw(self, qid: int, now_s: float) -> Query | None:
        """Take a queued query out without serving it (the runtime answered it otherwise)."""
        self.state.advance(now_s)
        return self.state.withdraw(qid)

    def set_overhead_s(self, overhead_s: float) -> None:
        """The transport delay per query the runtime measured (the policy plans with it)."""
        self.state.set_overhead_s(overhead_s)

    def tick(self, now_s: float) -> Sequence[Decision]:
        """No event, but time moved (a policy holding queries may now start them)."""
        self.state.advance(now_s)
        return self._decide()

    # --- resizing ---------------------------------------------------------------------------

    def add_instances(self, types: Iterable[str], now_s: float) -> list[int]:
        """Append instances of ``types`` (down until ``up``); returns their ids."""
        new = tuple(types)
        for t in new:
            self.scenario.profiles.get(t)  # an unknown type fails before anything changes
        first = self.state.n_instances
        self.state = state = self.state.extended(new)
        state.advance(now_s)
        self.ctx, self.policy = self._make_policy(state.instance_type)
        return list(range(first, state.n_instances))

    def retire(self, instances: Iterable[int], now_s: float) -> list[int]:
        """Take ``instances`` out for good; their running queries finish where they are.

        Returns those that are already free (the caller may stop their workers now); the
        others are free after their ``complete`` event.
        """
        state = self.state
        state.advance(now_s)
        free = []
        for j in instances:
            if j in self.retired:
                continue
            self.retired.add(j)
            if state.retire(j):
                free.append(j)
        return free

    @property
    def active(self) -> list[int]:
        """Ids of instances that are not retired."""
        return [j for j in range(self.state.n_instances) if j not in self.retired]

    # --- applying decisions -----------------------------------------------------------------

    def _decide(self) -> Sequence[Decision]:
        state = self.state
        decisions = self.policy.decide(state)
        if not decisions:
            return decisions
        # est_s_list holds est_ms / 1000 as floats: the same numbers without numpy's per-call
        # cost on every start.
        est_s, type_idx, queue = self.ctx.est_s_list, state.type_idx, state.queue
        for qid, j in decisions:
            query = queue.get(qid)
            if query is None:
                raise PolicyError(
                    f"policy {self.policy.name!r} starts query {qid}, which is not queued.",
                    "a policy may only start queries that are in state.queue, each once.",
                )
            state.start(qid, j, est_s(query.batch_size)[type_idx[j]])
        return decisions
