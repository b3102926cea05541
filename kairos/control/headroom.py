"""The headroom watch: how close the observed traffic brings the running pool to its limit.

``PlanWatch`` turns a router's traffic snapshot into ``Headroom``: the fluid upper bound of the
running pool for the observed mix (milliseconds to compute, done inline) and the simulated
allowable throughput under the router's policy (a capacity search: about a second of CPU, run
in a separate process so the router's loop never waits on it, and only when the mix has
moved). ``utilisation`` is the observed rate over the allowable throughput (over the bound
until the first search has finished): near 1 the pool is about to miss its QoS target. The
command line injects it into the router (``HeadroomWatch``), so the data plane plans nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from kairos.allocator.fluid import fluid_bound
from kairos.catalog import Pool
from kairos.scenario import Scenario
from kairos.serving.router.traffic import Headroom, Traffic
from kairos.sim.capacity import allowable_throughput
from kairos.workload import BatchMix

MIN_QUERIES_FOR_PLAN = 20  # fewer observed queries say too little about the mix
DRIFT_TV = 0.05  # re-run the search when the mix moved this far (total variation)
SEARCH_QUERIES = 2000
SEARCH_PRECISION = 0.05


def _simulated_allowable(scenario: Scenario, pool: Pool, policy: str) -> float:
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
