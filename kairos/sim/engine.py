"""Discrete-event simulator of a heterogeneous pool behind one central queue.

Events are query arrivals (pre-generated, already sorted) and instance completions (a heap);
the loop merges the two streams in time order, completions first on ties. After each event
the policy is asked for decisions and the simulator applies them. Each instance serves one
query at a time. A query's service time on every type is drawn up front from one uniform
``u`` per query (common random numbers: the same query is equally lucky on any type it may
land on), so the policy's choice never changes which random numbers later queries get and a
run is a pure function of its seed.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kairos.catalog import Pool
from kairos.distributor.base import Policy, PolicyContext, make_policy
from kairos.distributor.state import ClusterState
from kairos.errors import PolicyError
from kairos.scenario import Scenario
from kairos.sim.records import QueryRecords
from kairos.workload import QueryStream

PolicyFactory = Callable[[PolicyContext], Policy]


@dataclass(frozen=True, eq=False)
class SimResult:
    pool: Pool
    policy: str
    qos_ms: float
    cost_per_hr: float
    records: QueryRecords


def seed_streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent (service-time, policy) generators derived from one seed."""
    service, policy = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(service), np.random.default_rng(policy)


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
    svc_rng, policy_rng = seed_streams(seed)
    ctx = PolicyContext(
        scenario.model, scenario.qos_ms, scenario.profiles, instance_types, policy_rng
    )
    pol = (
        make_policy(policy, ctx, **(policy_options or {}))
        if isinstance(policy, str)
        else policy(ctx)
    )
    state = ClusterState(instance_types)
    ctx.prime(stream.batch_size)
    service = service_times_s(scenario, state.type_names, stream, svc_rng)
    start_s, finish_s, instance = _run(state, pol, ctx, stream, service)
    records = QueryRecords(
        arrival_s=stream.arrival_s,
        start_s=np.array(start_s),
        finish_s=np.array(finish_s),
        instance=np.array(instance, dtype=np.int64),
        batch_size=stream.batch_size,
        instance_type=instance_types,
    )
    return SimResult(pool, pol.name, scenario.qos_ms, pool.cost_per_hr(scenario.prices), records)


def _run(
    state: ClusterState,
    pol: Policy,
    ctx: PolicyContext,
    stream: QueryStream,
    service: list[list[float]],
) -> tuple[list[float], list[float], list[int]]:
    n = len(stream)
    queries = stream.queries()
    arrivals = stream.arrival_s.tolist()
    start_s = [0.0] * n
    finish_s = [0.0] * n
    where = [-1] * n
    type_idx = state.type_idx
    heap: list[tuple[float, int]] = []
    decide = pol.decide
    on_arrival = pol.on_arrival
    on_finish = pol.on_finish
    est_ms = ctx.est_ms
    push, pop = heapq.heappush, heapq.heappop
    i = 0
    while i < n or heap:
        if heap and (i >= n or heap[0][0] <= arrivals[i]):
            now, j = pop(heap)
            state.now_s = now
            q = state.finish(j)
            finish_s[q.qid] = now
            on_finish(q, j, state)
        else:
            now = arrivals[i]
            state.now_s = now
            q = queries[i]
            i += 1
            state.enqueue(q)
            on_arrival(q, state)
        for qid, j in decide(state):
            k = type_idx[j]
            q = state.start(qid, j, est_ms(queries[qid].batch_size)[k] / 1000.0)
            start_s[qid] = now
            where[qid] = j
            push(heap, (now + service[k][qid], j))
        if not heap and i >= n and state.queue:
            raise PolicyError(
                f"policy {pol.name!r} left {len(state.queue)} queries queued with every "
                "instance idle and no event pending.",
                "a policy must eventually start every queued query.",
            )
    return start_s, finish_s, where
