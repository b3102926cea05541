"""A tiny driver for policy tests: builds contexts and states, and replays random event
sequences (arrivals, completions, instances going down and up) against a policy while
checking that no query is lost or started twice."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kairos.distributor import ClusterState, PolicyContext
from kairos.distributor.driver import Driver
from kairos.profiles import ModelProfiles, ProfileSet, default_profiles
from kairos.scenario import Scenario
from kairos.workload import Query

_PROFILES: dict[str, ModelProfiles] = {}
_SETS: list[ProfileSet] = []

GPU, CPU, SLOW = "g4dn.xlarge", "r5n.large", "t3.xlarge"


def _profile_set() -> ProfileSet:
    if not _SETS:
        _SETS.append(default_profiles())
    return _SETS[0]


def model_profiles(model: str = "rm2") -> ModelProfiles:
    if model not in _PROFILES:
        _PROFILES[model] = _profile_set().model(model)
    return _PROFILES[model]


def context(
    types: tuple[str, ...], model: str = "rm2", qos_ms: float = 350.0, seed: int = 0
) -> PolicyContext:
    return PolicyContext(model, qos_ms, model_profiles(model), types, np.random.default_rng(seed))


def busy_state(
    types: tuple[str, ...], now_s: float, remaining_s: dict[int, float], queue: list[Query]
) -> ClusterState:
    """A state at ``now_s`` with instance ``j`` busy for ``remaining_s[j]`` more seconds."""
    state = ClusterState(types)
    filler = -1
    for j, rem in remaining_s.items():
        state.enqueue(Query(filler, 0.0, 10))
        state.start(filler, j, now_s + rem)  # the clock is at 0 here: busy until now_s + rem
        filler -= 1
    state.advance(now_s)
    for q in queue:
        state.enqueue(q)
    return state


@dataclass
class Trace:
    """What a replay saw: every decision in order, and per-query start and finish counts."""

    decisions: list[tuple[float, int, int]] = field(default_factory=list)
    starts: dict[int, int] = field(default_factory=dict)
    requeues: dict[int, int] = field(default_factory=dict)
    finished: set[int] = field(default_factory=set)


def replay(
    policy: str,
    types: tuple[str, ...],
    batches: list[int],
    gaps_ms: list[float],
    service_scale: list[float],
    downs: list[tuple[int, int]],
    *,
    model: str = "rm2",
    seed: int = 0,
    options: dict | None = None,
) -> Trace:
    """Replay queries (``batches``, inter-arrival ``gaps_ms``) through ``policy``.

    The events go through the same ``Driver`` the simulator and the router use. A query's
    true service time is its profile mean times ``service_scale`` (so estimates are off both
    ways). ``downs``: (after arrival k, instance j) pairs mark j down right after the k-th
    arrival and up again after the next arrival. Raises PolicyError (from the state) on an
    invalid decision and AssertionError if queries are stranded.
    """
    scenario = Scenario.build(model, profiles=_profile_set())
    driver = Driver(scenario, types, policy, seed=seed, policy_options=options)
    state = driver.state
    trace = Trace()
    heap: list[tuple[float, int, int]] = []  # (finish time, instance, generation)
    generation = [0] * len(types)
    down_at = dict(downs)
    revive: list[int] = []
    arrivals = np.cumsum(gaps_ms) / 1000.0
    queries = [
        Query(i, float(t), b) for i, (t, b) in enumerate(zip(arrivals, batches, strict=True))
    ]

    def carry_out(now: float, starts: Sequence[tuple[int, int]]) -> None:
        for qid, j in starts:
            trace.decisions.append((now, qid, j))
            trace.starts[qid] = trace.starts.get(qid, 0) + 1
            est_s = state.est_free_s[j] - now
            true_s = est_s * service_scale[qid % len(service_scale)]
            heapq.heappush(heap, (now + true_s, j, generation[j]))

    def complete(now: float, j: int, gen: int) -> None:
        if gen != generation[j] or state.running[j] is None:
            return  # the instance went down while this query ran; it was requeued
        q, starts = driver.complete(j, now)
        trace.finished.add(q.qid)
        carry_out(now, starts)

    for i, q in enumerate(queries):
        while heap and heap[0][0] <= q.arrival_s:
            complete(*heapq.heappop(heap))
        for j in revive:
            carry_out(q.arrival_s, driver.up(j, q.arrival_s))
        revive.clear()
        carry_out(q.arrival_s, driver.arrive(q, q.arrival_s))
        if i in down_at and state.up[down_at[i]]:
            j = down_at[i]
            generation[j] += 1
            lost, starts = driver.down(j, q.arrival_s)
            if lost is not None:
                trace.requeues[lost.qid] = trace.requeues.get(lost.qid, 0) + 1
            revive.append(j)
            carry_out(q.arrival_s, starts)
    now = state.now_s
    for j in revive:
        carry_out(now, driver.up(j, now))
    while heap:
        complete(*heapq.heappop(heap))
    assert not state.queue, f"{len(state.queue)} queries stranded with every instance idle"
    return trace
