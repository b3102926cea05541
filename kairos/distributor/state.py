"""The cluster state a distribution policy looks at.

One ``ClusterState`` is owned by a driver (the simulator, or the live router) and mutated only
through its driver methods (``advance``, ``enqueue``, ``start``, ``finish``, ``withdraw``,
``mark_down``, ``mark_up``, ``retire``, ``requeue``, ``set_overhead_s``, ``extended``); no
caller assigns its attributes. Policies read it and return decisions; they never mutate it.
Because both drivers keep the same state object, the same policy code runs in simulated and in
real time.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

from kairos.errors import PolicyError
from kairos.workload import Query


class ClusterState:
    """Central queue plus every instance's status, as seen at ``now_s``.

    Attributes (read-only for policies):
      now_s: the driver's clock, seconds.
      queue: queued queries keyed by qid, in arrival order (oldest first).
      instance_type: the type name of each instance (index = instance id).
      type_idx: index of each instance's type in ``type_names``.
      idle: ids of instances that are up and serve nothing.
      running: the query each instance serves, or None.
      est_free_s: when each instance is estimated to be free (start + mean service time);
        at or before ``now_s`` for an idle instance. Never the true (sampled) finish time.
      up: False for an instance the runtime marked down (dead worker); never idle.
      overhead_s: time a query spends outside queueing and service that the driver knows of
        (the live router's measured transport delay; 0 in simulation). Policies that plan
        against deadlines add it to a query's estimated finish.
    """

    __slots__ = (
        "now_s",
        "queue",
        "instance_type",
        "type_names",
        "type_idx",
        "idle",
        "running",
        "est_free_s",
        "up",
        "overhead_s",
    )

    def __init__(self, instance_types: tuple[str, ...]) -> None:
        if not instance_types:
            raise PolicyError("a cluster needs at least one instance.", "give a non-empty pool.")
        self.now_s = 0.0
        self.queue: dict[int, Query] = {}
        self.instance_type = tuple(instance_types)
        self.type_names: tuple[str, ...] = tuple(dict.fromkeys(instance_types))
        index = {t: k for k, t in enumerate(self.type_names)}
        self.type_idx: tuple[int, ...] = tuple(index[t] for t in instance_types)
        self.idle: set[int] = set(range(len(instance_types)))
        self.running: list[Query | None] = [None] * len(instance_types)
        self.est_free_s: list[float] = [0.0] * len(instance_types)
        self.up: list[bool] = [True] * len(instance_types)
        self.overhead_s = 0.0

    @property
    def n_instances(self) -> int:
        return len(self.instance_type)

    def remaining_s(self, instance: int) -> float:
        """Estimated time until ``instance`` is free (0 when idle or overdue)."""
        return max(0.0, self.est_free_s[instance] - self.now_s)

    def head(self, n: int) -> list[Query]:
        """The ``n`` oldest queued queries."""
        return list(islice(self.queue.values(), n))

    def __iter__(self) -> Iterator[Query]:
        return iter(self.queue.values())

    # --- driver methods -------------------------------------------------------------------

    def advance(self, now_s: float) -> None:
        """Set the clock (the driver's event time; the state never reads a clock itself)."""
        self.now_s = now_s

    def set_overhead_s(self, overhead_s: float) -> None:
        self.overhead_s = overhead_s

    def enqueue(self, query: Query) -> None:
        self.queue[query.qid] = query

    def withdraw(self, qid: int) -> Query | None:
        """Take query ``qid`` out of the queue unserved; None when it is not queued."""
        return self.queue.pop(qid, None)

    def start(self, qid: int, instance: int, est_service_s: float) -> Query:
        """Move query ``qid`` from the queue onto idle ``instance``; validate the decision."""
        query = self.queue.pop(qid, None)
        if query is None:
            raise PolicyError(
                f"decision starts query {qid} which is not queued.",
                "a policy may only start queries that are in state.queue, each once.",
            )
        if instance not in self.idle:
            self.queue[qid] = query
            raise PolicyError(
                f"decision starts query {qid} on instance {instance}, which is not idle.",
                "a policy may only start queries on instances in state.idle.",
            )
        self.idle.discard(instance)
        self.running[instance] = query
        self.est_free_s[instance] = self.now_s + est_service_s
        return query

    def finish(self, instance: int) -> Query:
        query = self.running[instance]
        if query is None:
            raise PolicyError(f"instance {instance} finished while idle.", "report a bug.")
        self.running[instance] = None
        self.est_free_s[instance] = self.now_s
        if self.up[instance]:
            self.idle.add(instance)
        return query

    def mark_down(self, instance: int) -> Query | None:
        """Take ``instance`` out of service; its running query (if any) goes back to the queue."""
        self.up[instance] = False
        self.idle.discard(instance)
        query = self.running[instance]
        self.running[instance] = None
        if query is not None:
            self.requeue(query)
        return query

    def mark_up(self, instance: int) -> None:
        self.up[instance] = True
        self.est_free_s[instance] = self.now_s
        if self.running[instance] is None:
            self.idle.add(instance)

    def retire(self, instance: int) -> bool:
        """Take ``instance`` out of service for good; unlike ``mark_down`` the query it serves
        stays and finishes there. Returns whether it is free now."""
        self.up[instance] = False
        self.idle.discard(instance)
        return self.running[instance] is None

    def extended(self, instance_types: tuple[str, ...]) -> ClusterState:
        """A new state with ``instance_types`` appended (down, ids after the existing ones);
        the queue, the clock and every existing instance's status carry over. This state
        must not be used afterwards: the two share the queue."""
        state = ClusterState(self.instance_type + instance_types)
        state.now_s = self.now_s
        state.queue = self.queue
        state.overhead_s = self.overhead_s
        first = self.n_instances
        state.running[:first] = self.running
        state.est_free_s[:first] = self.est_free_s
        state.up[:first] = self.up
        state.up[first:] = [False] * len(instance_types)
        state.idle = set(self.idle)
        return state

    def requeue(self, query: Query) -> None:
        """Put a query back in arrival order (rare: a worker died while serving it)."""
        items = list(self.queue.values()) + [query]
        items.sort(key=lambda q: (q.arrival_s, q.qid))
        self.queue = {q.qid: q for q in items}
