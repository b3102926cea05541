"""Discrete-event simulator of a heterogeneous pool behind one central queue.

Events are query arrivals (pre-generated, already sorted) and instance completions (a heap);
the loop merges the two streams in time order, completions first on ties, and feeds each to
the ``Driver`` (``arrive`` / ``complete``), which asks the policy and applies its decisions;
the simulator schedules the completion of every query started. Each instance serves one
query at a time. A query's service time on every type is drawn up front from one uniform
``u`` per query (common random numbers: the same query is equally lucky on any type it may
land on), so the policy's choice never changes which random numbers later queries get and a
run is a pure function of its seed.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kairos.catalog import Pool
from kairos.distributor.driver import Driver, PolicyFactory
from kairos.errors import PolicyError
from kairos.scenario import Scenario
from kairos.sim.records import QueryRecords
from kairos.workload import Query, QueryStream


@dataclass(frozen=True, eq=False)
class SimResult:
    pool: Pool
    policy: str
    qos_ms: float
    cost_per_hr: float
    records: QueryRecords


def service_times_s(
    scenario: Scenario, type_names: tuple[str, ...], stream: QueryStream, rng: np.random.Generator
) -> list[list[float]]:
    """``out[type][qid]``: the service time (s) query ``qid`` would take on each type."""
    u = rng.random(len(stream))
    return [
        (scenario.profiles.get(t).service_ms(stream.batch_size, u) / 1000.0).tolist()
        for t in type_names
    ]


def simulate(
    scenario: Scenario,
    pool: Pool,
    policy: str | PolicyFactory,
    stream: QueryStream,
    *,
    seed: int = 0,
    policy_options: Mapping[str, Any] | None = None,
) -> SimResult:
    """Run ``stream`` through ``pool`` under ``policy`` until every query has finished."""
    instance_types = pool.instance_types()
    for t in pool.types:
        scenario.profiles.get(t)
    driver = Driver(scenario, instance_types, policy, seed=seed, policy_options=policy_options)
    driver.ctx.prime(stream.batch_size)
    service = service_times_s(scenario, driver.state.type_names, stream, driver.service_rng)
    start_s, finish_s, instance = _run(driver, stream, service)
    return sim_result(
        scenario, pool, driver.policy.name, stream, (start_s, finish_s, instance), instance_types
    )


def sim_result(
    scenario: Scenario,
    pool: Pool,
    policy_name: str,
    stream: QueryStream,
    run: tuple[list[float], list[float], list[int]],
    instance_type: tuple[str, ...],
) -> SimResult:
    """A run's result: ``run`` is each query's start, finish and instance id, and
    ``instance_type`` the type of each instance id."""
    start_s, finish_s, instance = run
    records = QueryRecords(
        arrival_s=stream.arrival_s,
        start_s=np.array(start_s),
        finish_s=np.array(finish_s),
        instance=np.array(instance, dtype=np.int64),
        batch_size=stream.batch_size,
        instance_type=instance_type,
    )
    return SimResult(pool, policy_name, scenario.qos_ms, pool.cost_per_hr(scenario.prices), records)


def _run(
    driver: Driver, stream: QueryStream, service: list[list[float]]
) -> tuple[list[float], list[float], list[int]]:
    """Merge arrivals and completions in time order (completions first on ties)."""
    n = len(stream)
    # Each query is made when it arrives, not all up front: a trial that fails stops early
    # and never reaches most of its stream.
    arrivals = stream.arrival_s.tolist()
    batches = stream.batch_size.tolist()
    start_s = [0.0] * n
    finish_s = [0.0] * n
    where = [-1] * n
    type_idx = driver.state.type_idx
    heap: list[tuple[float, int]] = []
    arrive, complete = driver.arrive, driver.complete
    push, pop = heapq.heappush, heapq.heappop
    i = 0
    while i < n or heap:
        if heap and (i >= n or heap[0][0] <= arrivals[i]):
            now, j = pop(heap)
            q, starts = complete(j, now)
            finish_s[q.qid] = now
        else:
            now = arrivals[i]
            starts = arrive(Query(i, now, batches[i]), now)
            i += 1
        for qid, j in starts:
            start_s[qid] = now
            where[qid] = j
            push(heap, (now + service[type_idx[j]][qid], j))
        if not heap and i >= n and driver.state.queue:
            raise PolicyError(
                f"policy {driver.policy.name!r} left {len(driver.state.queue)} queries queued "
                "with every instance idle and no event pending.",
                "a policy must eventually start every queued query.",
            )
    return start_s, finish_s, where
