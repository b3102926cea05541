"""The router's Prometheus metrics (one registry per router, so tests can run several).

Times are in profile seconds: with ``--time-scale X`` the router divides wall time by X, so
the histograms read like the profiles and the QoS target. Queue length, in-flight queries
and workers up are read from the router's state at scrape time (no cost per query).

``ControlGauges`` are what a control loop beside the router (``kairos serve --autoscale``)
decided: plain gauges it sets, so the router knows nothing of the controller. They read NaN
while no controller runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.025,
    0.03,
    0.035,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.25,
    0.35,
    0.5,
    0.75,
    1.0,
    2.0,
    5.0,
)
OVERHEAD_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ControlGauges:
    """The controller's last decision: the rate it plans for, the pool it rents (instances
    per type, draining ones left out) and what the rented pool costs (draining ones in: they
    are billed until they finish), and how many moves it made."""

    def __init__(self, registry: CollectorRegistry, type_names: tuple[str, ...]) -> None:
        self.target_rate = Gauge(
            "kairos_control_target_rate_qps",
            "Rate the autoscaler plans the pool for (profile q/s; NaN without one).",
            registry=registry,
        )
        self.target_instances = Gauge(
            "kairos_control_target_instances",
            "Instances of each type the autoscaler rents.",
            ["instance_type"],
            registry=registry,
        )
        self.cost_per_hr = Gauge(
            "kairos_control_cost_per_hour",
            "Hourly price of the rented pool (serving, booting and draining), in dollars.",
            registry=registry,
        )
        self.moves = Counter(
            "kairos_control_moves",
            "Pool changes the autoscaler made.",
            registry=registry,
        )
        self.target_rate.set(float("nan"))
        self.cost_per_hr.set(float("nan"))
        for instance_type in type_names:
            self.target_instances.labels(instance_type).set(float("nan"))
        self._types = set(type_names)  # every type with a series

    def set(self, target_rate_qps: float, counts: dict[str, int], cost_per_hr: float) -> None:
        """One decision; a type no longer rented reads 0 (its series stays, as a history)."""
        self.target_rate.set(target_rate_qps)
        for instance_type in self._types - counts.keys():
            self.target_instances.labels(instance_type).set(0)
        for instance_type, n in counts.items():
            self.target_instances.labels(instance_type).set(n)
        self._types |= counts.keys()
        self.cost_per_hr.set(cost_per_hr)


class RouterMetrics:
    def __init__(
        self,
        type_names: tuple[str, ...],
        cost_per_hr: Callable[[], float],
        queue_length: Callable[[], float],
        in_flight: Callable[[], float],
        workers_up: Callable[[], float],
        traffic: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "kairos_query_latency_seconds",
            "End-to-end latency in the router (arrival to answer), by instance type.",
            ["instance_type"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.queue_time = Histogram(
            "kairos_queue_time_seconds",
            "Time queries wait in the central queue.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.overhead = Histogram(
            "kairos_router_overhead_seconds",
            "Wall time the router and RPC add per query beyond queueing and service.",
            buckets=OVERHEAD_BUCKETS_S,
            registry=r,
        )
        self.completed = Counter(
            "kairos_queries_completed",
            "Queries answered with a result.",
            ["instance_type"],
            registry=r,
        )
        self.qos_violations = Counter(
            "kairos_qos_violations",
            "Answered queries whose latency exceeded the QoS target.",
            registry=r,
        )
        self.rejected = Counter(
            "kairos_queries_rejected",
            "Queries refused with HTTP 503 (queue full, draining).",
            ["reason"],
            registry=r,
        )
        self.errors = Counter(
            "kairos_query_errors",
            "Queries answered with an error, by HTTP status.",
            ["status"],
            registry=r,
        )
        self.worker_failures = Counter(
            "kairos_worker_failures",
            "Workers marked down (died, hung or unreachable).",
            registry=r,
        )
        self.redispatched = Counter(
            "kairos_queries_redispatched",
            "Queries re-queued after their worker failed.",
            registry=r,
        )
        self.sent_behind = Counter(
            "kairos_queries_sent_behind",
            "Queries sent to a model worker while its previous query was still out (--pipeline).",
            registry=r,
        )
        Gauge("kairos_queue_length", "Queries in the central queue.", registry=r).set_function(
            queue_length
        )
        Gauge("kairos_in_flight_queries", "Queries being served.", registry=r).set_function(
            in_flight
        )
        Gauge("kairos_workers_up", "Workers up.", registry=r).set_function(workers_up)
        Gauge(
            "kairos_pool_cost_per_hour", "Hourly price of the pool in dollars.", registry=r
        ).set_function(cost_per_hr)
        # Series that exist from the start read 0 instead of missing (rates and alerts work).
        for reason in ("queue_full", "draining", "not_ready"):
            self.rejected.labels(reason)
        for status in ("400", "500", "502"):
            self.errors.labels(status)
        if traffic is not None:
            self._traffic_gauges(traffic)
        self.control = ControlGauges(r, type_names)
        self._by_type: dict[str, tuple[Any, Any]] = {}
        for t in type_names:
            self._series(t)

    def _series(self, instance_type: str) -> tuple[Any, Any]:
        """The type's latency histogram and completion counter (types join on a resize)."""
        series = self._by_type.get(instance_type)
        if series is None:
            series = (self.latency.labels(instance_type), self.completed.labels(instance_type))
            self._by_type[instance_type] = series
        return series

    def _traffic_gauges(self, traffic: Callable[[], dict[str, Any]]) -> None:
        """Observed traffic and the pool's headroom, read at scrape time (one snapshot serves
        the gauges of one scrape: it is kept for a second)."""
        cache: dict[str, Any] = {}
        taken = [-1.0]

        def reader(key: str) -> Callable[[], float]:
            def read() -> float:
                now = time.monotonic()
                if now - taken[0] > 1.0:
                    cache.clear()
                    cache.update(traffic())
                    taken[0] = now
                value = cache.get(key)
                return float("nan") if value is None else float(value)

            return read

        specs = [
            ("kairos_observed_rate_qps", "Arrival rate over the traffic window.", "rate_qps"),
            (
                "kairos_observed_mean_batch",
                "Mean batch size over the traffic window.",
                "mean_batch",
            ),
            (
                "kairos_plan_bound_qps",
                "Fluid upper bound of the pool for the observed mix.",
                "bound_qps",
            ),
            (
                "kairos_plan_allowable_qps",
                "Simulated allowable throughput of the pool for the observed mix.",
                "allowable_qps",
            ),
            (
                "kairos_plan_utilisation",
                "Observed rate / allowable throughput (bound until simulated); near 1 = at risk.",
                "utilisation",
            ),
        ]
        for name, doc, key in specs:
            Gauge(name, doc, registry=self.registry).set_function(reader(key))

    def observe(
        self, instance_type: str, latency_s: float, queue_s: float, overhead_s: float, qos_s: float
    ) -> None:
        latency, completed = self._series(instance_type)
        latency.observe(latency_s)
        completed.inc()
        self.queue_time.observe(queue_s)
        self.overhead.observe(overhead_s)
        if latency_s > qos_s:
            self.qos_violations.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
