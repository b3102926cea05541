"""The router applies decisions through the same ``Driver`` as the simulator.

With an injected clock and an in-process pool, the live path replays a simulated run
exactly: same seed, same arrivals, same service times give the same instance and start time
for every query, also for the randomised ``power-of-two`` policy (the policy gets the same
random stream in both), and the ``Driver`` sees the same events in the same order.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Iterator

import numpy as np
import pytest

from kairos.catalog import Pool
from kairos.distributor.driver import Driver
from kairos.scenario import Scenario
from kairos.serving.router.config import RouterConfig
from kairos.serving.router.router import Router
from kairos.serving.settings import DispatchSettings
from kairos.sim.engine import service_times_s, simulate
from kairos.workload import QueryStream, poisson_stream
from tests.serving.fakes import Answer, FakePool, ManualClock

POOL = Pool.parse("g4dn.xlarge=1,r5n.large=3")
SEED = 7


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int, float]]]:
    """Every Driver event as (event, query or instance id, clock), in order."""
    seen: list[tuple[str, int, float]] = []
    arrive, complete = Driver.arrive, Driver.complete

    def spy_arrive(self, query, now_s):
        seen.append(("arrive", query.qid, now_s))
        return arrive(self, query, now_s)

    def spy_complete(self, instance, now_s, then=None):
        seen.append(("complete", instance, now_s))
        return complete(self, instance, now_s, then)

    monkeypatch.setattr(Driver, "arrive", spy_arrive)
    monkeypatch.setattr(Driver, "complete", spy_complete)
    yield seen


def live_run(
    scenario: Scenario, policy: str, stream: QueryStream
) -> tuple[dict[int, tuple[int, float]], Router]:
    """Drive a router (fake pool, manual clock) with ``stream``; each query takes the time
    the simulator would draw for it on the type it lands on. Returns qid -> (instance,
    start time)."""
    clock = ManualClock()
    pool = FakePool()
    cfg = RouterConfig(
        model=scenario.model,
        pool=POOL,
        policy=policy,
        seed=SEED,
        dispatch=DispatchSettings(overhead_factor=0.0),
    )
    router = Router(cfg, scenario, pool=pool, clock=clock)
    asyncio.run(router.start_workers())
    svc_rng = np.random.default_rng(np.random.SeedSequence(SEED).spawn(2)[0])
    service = service_times_s(scenario, router.driver.state.type_names, stream, svc_rng)
    type_idx = router.driver.state.type_idx
    started: dict[int, tuple[int, float]] = {}
    done: list[tuple[float, int]] = []

    def note_starts() -> None:
        for sent in pool.log[len(started) :]:
            started[sent.qid] = (sent.instance, clock.now)
            finish = clock.now + service[type_idx[sent.instance]][sent.qid]
            heapq.heappush(done, (finish, sent.instance))

    arrivals = stream.arrival_s.tolist()
    i = 0
    while i < len(arrivals) or done:
        if done and (i >= len(arrivals) or done[0][0] <= arrivals[i]):
            clock.now, j = heapq.heappop(done)
            pool.finish(j, 0.0)
        else:
            clock.now = arrivals[i]
            router.dispatcher.admit(b"", int(stream.batch_size[i]), None, Answer(), clock.now)
            i += 1
        note_starts()
    return started, router


@pytest.mark.parametrize("policy", ["power-of-two", "kairos", "fcfs"])
def test_live_path_replays_the_simulated_run(
    policy: str, calls: list[tuple[str, int, float]]
) -> None:
    scenario = Scenario.build("dien")
    stream = poisson_stream(300.0, 600, scenario.mix, np.random.default_rng(3))
    sim = simulate(scenario, POOL, policy, stream, seed=SEED).records
    sim_calls = list(calls)
    calls.clear()
    live, router = live_run(scenario, policy, stream)
    assert len(live) == len(stream)
    for qid in range(len(stream)):
        instance, start_s = live[qid]
        assert instance == sim.instance[qid], f"query {qid}"
        assert start_s == pytest.approx(sim.start_s[qid], abs=1e-9), f"query {qid}"
    assert [c[:2] for c in calls] == [c[:2] for c in sim_calls]
    assert not router.dispatcher.pending


def test_a_seeded_random_policy_differs_across_seeds() -> None:
    """The replay test above is not vacuous: another seed changes power-of-two's choices."""
    scenario = Scenario.build("dien")
    stream = poisson_stream(300.0, 300, scenario.mix, np.random.default_rng(3))
    a = simulate(scenario, POOL, "power-of-two", stream, seed=SEED).records.instance
    b = simulate(scenario, POOL, "power-of-two", stream, seed=SEED + 1).records.instance
    assert (a != b).any()
