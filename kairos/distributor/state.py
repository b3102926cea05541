"""The cluster state a distribution policy looks at.

One ``ClusterState`` is owned by a driver (the simulator, or the live router) and mutated only
through the driver methods ``enqueue``, ``start``, ``finish``, ``mark_down`` and ``requeue``.
Policies read it and return decisions; they never mutate it. Because both drivers keep the
same state object, the same policy code runs in simulated and in real time.
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

    def enqueue(self, query: Query) -> None:
        self.queue[query.qid] = query

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

    def requeue(self, query: Query) -> None:
        """Put a query back in arrival order (rare: a worker died while serving it)."""
        items = list(self.queue.values()) + [query]
        items.sort(key=lambda q: (q.arrival_s, q.qid))
        self.queue = {q.qid: q for q in items}
