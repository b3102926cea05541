"""A tiny driver for policy tests: builds contexts and states, and replays random event
sequences (arrivals, completions, instances going down and up) against a policy while
checking that no query is lost or started twice."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from kairos.distributor import ClusterState, PolicyContext, make_policy
from kairos.profiles import ModelProfiles, default_profiles
from kairos.workload import Query

_PROFILES: dict[str, ModelProfiles] = {}

GPU, CPU, SLOW = "g4dn.xlarge", "r5n.large", "t3.xlarge"


def model_profiles(model: str = "rm2") -> ModelProfiles:
    if model not in _PROFILES:
        _PROFILES[model] = default_profiles().model(model)
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
        state.start(filler, j, 0.0)
        state.est_free_s[j] = now_s + rem
        filler -= 1
    state.now_s = now_s
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

    A query's true service time is its profile mean times ``service_scale`` (so estimates are
    off both ways). ``downs``: (after arrival k, instance j) pairs mark j down right after the
    k-th arrival and up again after the next arrival. Raises PolicyError (from the state) on
    an invalid decision and AssertionError if queries are stranded.
    """
    ctx = context(types, model, seed=seed)
    pol = make_policy(policy, ctx, **(options or {}))
    state = ClusterState(types)
    trace = Trace()
    heap: list[tuple[float, int, int]] = []  # (finish time, instance, generation)
    generation = [0] * len(types)
    down_at = {k: j for k, j in downs}
    revive: list[int] = []
    arrivals = np.cumsum(gaps_ms) / 1000.0
    queries = [
        Query(i, float(t), b) for i, (t, b) in enumerate(zip(arrivals, batches, strict=True))
    ]

    def apply(now: float) -> None:
        for qid, j in pol.decide(state):
            k = state.type_idx[j]
            q = state.queue.get(qid)
            assert q is not None, f"query {qid} is not queued"
            est_s = float(ctx.est_ms(q.batch_size)[k]) / 1000.0
            state.start(qid, j, est_s)
            trace.decisions.append((now, qid, j))
            trace.starts[qid] = trace.starts.get(qid, 0) + 1
            true_s = est_s * service_scale[qid % len(service_scale)]
            heapq.heappush(heap, (now + true_s, j, generation[j]))

    def complete(now: float, j: int, gen: int) -> None:
        if gen != generation[j] or state.running[j] is None:
            return  # the instance went down while this query ran; it was requeued
        state.now_s = now
        q = state.finish(j)
        trace.finished.add(q.qid)
        pol.on_finish(q, j, state)
        apply(now)

    for i, q in enumerate(queries):
        while heap and heap[0][0] <= q.arrival_s:
            complete(*heapq.heappop(heap))
        state.now_s = q.arrival_s
        for j in revive:
            state.mark_up(j)
        revive.clear()
        state.enqueue(q)
        pol.on_arrival(q, state)
        if i in down_at and state.up[down_at[i]]:
            j = down_at[i]
            generation[j] += 1
            lost = state.mark_down(j)
            if lost is not None:
                trace.requeues[lost.qid] = trace.requeues.get(lost.qid, 0) + 1
            revive.append(j)
        apply(q.arrival_s)
    now = state.now_s
    for j in revive:
        state.mark_up(j)
    apply(now)
    while heap:
        complete(*heapq.heappop(heap))
    assert not state.queue, f"{len(state.queue)} queries stranded with every instance idle"
    return trace
