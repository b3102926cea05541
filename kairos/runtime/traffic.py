"""What the router observes: the arrival rate and batch-size mix over a sliding window, and
how close that traffic brings the running pool to its allowable throughput.

``TrafficWindow`` keeps the (arrival time, batch size) of the queries admitted in the last
``window_s`` seconds of the router's clock (profile time), capped at ``max_queries`` entries
so memory stays bounded whatever the rate (past the cap the rate is measured over the span
the kept entries cover). ``snapshot`` gives the observed rate and mix.

``PlanWatch`` turns a snapshot into headroom: the fluid upper bound of the running pool for
the observed mix (milliseconds to compute, done inline) and the simulated allowable
throughput under the router's policy (a capacity search: about a second of CPU, run in a
separate process so the router's loop never waits on it, and only when the mix has moved).
``utilisation`` is the observed rate over the allowable throughput (over the bound until the
first search has finished): near 1 the pool is about to miss its QoS target.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import multiprocessing
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from kairos.catalog import Pool
from kairos.errors import ConfigError
from kairos.scenario import Scenario
from kairos.workload import BatchMix

MIN_QUERIES_FOR_PLAN = 20  # fewer observed queries say too little about the mix
DRIFT_TV = 0.05  # re-run the search when the mix moved this far (total variation)
SEARCH_QUERIES = 2000
SEARCH_PRECISION = 0.05


@dataclass(frozen=True)
class Traffic:
    """One observation: ``queries`` admitted over the last ``span_s`` seconds."""

    window_s: float
    span_s: float
    queries: int
    rate_qps: float
    mix: BatchMix | None

    def as_dict(self) -> dict[str, Any]:
        mix = self.mix
        return {
            "window_s": self.window_s,
            "span_s": self.span_s,
            "queries": self.queries,
            "rate_qps": self.rate_qps,
            "mean_batch": None if mix is None else mix.mean,
            "mix": None
            if mix is None
            else {"batch_size": mix.support.tolist(), "weight": mix.probs.tolist()},
        }


class TrafficWindow:
    def __init__(self, window_s: float, max_queries: int = 200_000) -> None:
        if not (math.isfinite(window_s) and window_s > 0):
            raise ConfigError(
                f"--traffic-window-s {window_s!r} is not a positive number.",
                "pass the seconds of traffic to observe, e.g. 60.",
            )
        self.window_s = window_s
        self._entries: deque[tuple[float, int]] = deque(maxlen=max_queries)
        self._since_s: float | None = None

    def note(self, now_s: float, batch: int) -> None:
        if self._since_s is None:
            self._since_s = now_s
        self._entries.append((now_s, batch))

    def snapshot(self, now_s: float) -> Traffic:
        entries = self._entries
        horizon = now_s - self.window_s
        while entries and entries[0][0] < horizon:
            entries.popleft()
        since = now_s if self._since_s is None else self._since_s
        full = len(entries) == entries.maxlen
        start = entries[0][0] if full and entries else max(horizon, since)
        span_s = max(now_s - start, 1e-9)
        if not entries:
            return Traffic(self.window_s, span_s, 0, 0.0, None)
        sizes, counts = np.unique(
            np.fromiter((b for _, b in entries), np.int64), return_counts=True
        )
        mix = BatchMix("observed", sizes, counts / counts.sum())
        return Traffic(self.window_s, span_s, len(entries), len(entries) / span_s, mix)


def _simulated_allowable(scenario: Scenario, pool: Pool, policy: str) -> float:
    from kairos.sim.capacity import allowable_throughput

    res = allowable_throughput(
        scenario, pool, policy, queries=SEARCH_QUERIES, precision=SEARCH_PRECISION
    )
    return res.allowable_qps


def total_variation(a: BatchMix, b: BatchMix) -> float:
    support = np.union1d(a.support, b.support)
    pa = np.zeros(len(support))
    pb = np.zeros(len(support))
    pa[np.searchsorted(support, a.support)] = a.probs
    pb[np.searchsorted(support, b.support)] = b.probs
    return 0.5 * float(np.abs(pa - pb).sum())


@dataclass(frozen=True)
class Headroom:
    pool: str
    bound_qps: float
    allowable_qps: float | None
    mix_queries: int

    def utilisation(self, rate_qps: float) -> float:
        ref = self.allowable_qps if self.allowable_qps else self.bound_qps
        return rate_qps / ref if ref > 0 else math.inf


class PlanWatch:
    """Headroom of the running pool for the observed mix (see the module docstring)."""

    def __init__(self, scenario: Scenario, policy: str, pool: Callable[[], Pool]) -> None:
        self._scenario = scenario
        self._policy = policy
        self._pool = pool
        self.headroom: Headroom | None = None
        self._mix: BatchMix | None = None
        self._searching: concurrent.futures.Future[float] | None = None
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None

    def update(self, traffic: Traffic) -> Headroom | None:
        """Refresh the bound inline and start a search if the mix or the pool moved."""
        mix, pool = traffic.mix, self._pool()
        if mix is None or traffic.queries < MIN_QUERIES_FOR_PLAN:
            return self.headroom
        old = self.headroom
        moved = (
            old is None
            or old.pool != str(pool)
            or self._mix is None
            or total_variation(mix, self._mix) > DRIFT_TV
        )
        if not moved:
            return old
        from kairos.allocator.fluid import fluid_bound

        scenario = replace(self._scenario, mix=mix)
        bound = fluid_bound(scenario, pool)
        self._mix = mix
        self.headroom = Headroom(str(pool), bound, None, traffic.queries)
        self._search(scenario, pool)
        return self.headroom

    def _search(self, scenario: Scenario, pool: Pool) -> None:
        if self._searching is not None and not self._searching.done():
            self._searching.cancel()
        if self._executor is None:
            ctx = multiprocessing.get_context("spawn")
            self._executor = concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx)
        future = self._executor.submit(_simulated_allowable, scenario, pool, self._policy)
        self._searching = future
        key = str(pool)

        def done(f: concurrent.futures.Future[float]) -> None:
            if f.cancelled() or f.exception() is not None:
                return
            head = self.headroom
            if head is not None and head.pool == key and self._searching is f:
                self.headroom = replace(head, allowable_qps=f.result())

        future.add_done_callback(done)

    async def run(self, snapshot: Callable[[], Traffic], every_s: float) -> None:
        """Refresh every ``every_s`` seconds until cancelled."""
        while True:
            await asyncio.sleep(every_s)
            self.update(snapshot())

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
