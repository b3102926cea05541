"""Per-query records of a run and the metrics computed from them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metrics:
    """Summary of the measured (post-warm-up) queries of one run."""

    queries: int
    throughput_qps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    qos_met_fraction: float
    utilisation: dict[str, float]


@dataclass(frozen=True, eq=False)
class QueryRecords:
    """One entry per query, indexed by qid: when it arrived, started, finished and where."""

    arrival_s: np.ndarray
    start_s: np.ndarray
    finish_s: np.ndarray
    instance: np.ndarray
    batch_size: np.ndarray
    instance_type: tuple[str, ...]  # type of each instance id

    @property
    def latency_ms(self) -> np.ndarray:
        return (self.finish_s - self.arrival_s) * 1000.0

    @property
    def queue_ms(self) -> np.ndarray:
        return (self.start_s - self.arrival_s) * 1000.0

    def metrics(self, qos_ms: float, warmup: int = 0) -> Metrics:
        """Metrics over queries ``warmup..end`` (the first ``warmup`` see an empty pool)."""
        sl = slice(warmup, None)
        lat = self.latency_ms[sl]
        n = len(lat)
        if n == 0:
            return Metrics(0, 0.0, 0.0, 0.0, 0.0, 0.0, {})
        p50, p90, p99 = np.percentile(lat, [50, 90, 99])
        return Metrics(
            queries=n,
            throughput_qps=self.served_qps(warmup),
            p50_ms=float(p50),
            p90_ms=float(p90),
            p99_ms=float(p99),
            qos_met_fraction=float(np.mean(lat <= qos_ms)),
            utilisation=self.utilisation(),
        )

    def served_qps(self, warmup: int = 0) -> float:
        """Completions per second while the measured queries arrive.

        Counted over the window from the first to the last measured arrival, so an overloaded
        pool reports what it serves (its capacity), not the arrivals divided by the time it
        took to drain a backlog; under a sustainable load it is the arrival rate.
        """
        arrivals = self.arrival_s[warmup:]
        if len(arrivals) < 2:
            return 0.0
        t0, t1 = float(arrivals.min()), float(arrivals.max())
        if t1 <= t0:
            return float("inf")
        done = np.count_nonzero((self.finish_s >= t0) & (self.finish_s <= t1))
        return done / (t1 - t0)

    def utilisation(self) -> dict[str, float]:
        """Busy share of each type's instances over the whole run."""
        span = float(self.finish_s.max() - self.arrival_s.min()) if len(self.finish_s) else 0.0
        busy = self.finish_s - self.start_s
        types = np.array(self.instance_type)
        per_query_type = types[self.instance]
        out: dict[str, float] = {}
        for t in dict.fromkeys(self.instance_type):
            count = int(np.sum(types == t))
            total = float(busy[per_query_type == t].sum())
            out[t] = total / (count * span) if span > 0 else 0.0
        return out
