"""The live router with time-scaled replay workers agrees with the simulator near capacity.

The same seeded arrivals and batch sizes go through ``simulate`` and through a real router at
0.9 x the pool's simulated allowable throughput, where queueing, not idle capacity, decides
the latency tail: a router that dispatched worse than the simulator's driver, or a simulator
that flattered the policy, shows here. The workers draw their own service times, so the
agreement is statistical: throughput within 10%, p99 latency within 15% and the share of
queries within QoS within 1.5 points (stated tolerances; observed on the development machine:
p99 within 3%, shares within 0.3 points). The live allowable throughput itself is compared
with the simulator's by ``benchmarks/bench_live.py`` (real time, full search).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from kairos.aio import run_event_loop
from kairos.catalog import Pool
from kairos.client.launch import running_router
from kairos.client.loadgen import LoadSpec, run_load
from kairos.scenario import Scenario
from kairos.sim.capacity import allowable_throughput
from kairos.sim.engine import simulate
from kairos.workload import poisson_stream
from tests.serving.helpers import wait_for_quiet_cpu

POOL = "g4dn.xlarge=1,r5n.large=2"
TIME_SCALE = 0.25
QUERIES = 1500
LOAD = 0.9  # of the simulated allowable throughput
THROUGHPUT_TOLERANCE = 0.10
P99_TOLERANCE = 0.15
QOS_SHARE_TOLERANCE = 0.015


def check_against_simulator(
    policy: str,
    backend_args: Sequence[str] = (),
    ready_timeout_s: float = 60,
    on_ready: Callable[[str, int], object] | None = None,
) -> None:
    """Serve ``POOL`` with ``policy`` (plus ``backend_args``), send the same seeded queries as
    the simulator gets, and assert the two agree within the stated tolerances.
    ``on_ready(url, instances)`` runs once the router answers, before any load."""
    scenario = Scenario.build("rm2")
    pool = Pool.parse(POOL)
    rate = LOAD * allowable_throughput(scenario, pool, policy).allowable_qps
    stream = poisson_stream(rate, QUERIES, scenario.mix, np.random.default_rng(11))
    warmup = QUERIES // 10
    sim = simulate(scenario, pool, policy, stream, seed=11).records.metrics(scenario.qos_ms, warmup)
    args = [
        "--model",
        "rm2",
        "--pool",
        POOL,
        "--policy",
        policy,
        "--time-scale",
        str(TIME_SCALE),
        "--seed",
        "11",
        *backend_args,
    ]
    with running_router(args, ready_timeout_s=ready_timeout_s) as router:
        if on_ready is not None:
            on_ready(router.url, pool.size)
        wait_for_quiet_cpu()
        spec = LoadSpec(router.url, "rm2", rate, 0.0, scenario.mix, seed=11)
        live = run_event_loop(run_load(spec, stream=stream))
    print(
        f"{policy} {' '.join(backend_args)} at {rate:.1f} q/s: live {live.throughput_qps:.2f} "
        f"q/s p99 {live.p99_ms:.1f} ms within QoS {live.qos_met_fraction:.3f} | sim "
        f"{sim.throughput_qps:.2f} q/s p99 {sim.p99_ms:.1f} ms within QoS "
        f"{sim.qos_met_fraction:.3f}"
    )
    assert live.completed == live.sent == QUERIES
    assert live.throughput_qps == pytest.approx(sim.throughput_qps, rel=THROUGHPUT_TOLERANCE)
    assert live.p99_ms == pytest.approx(sim.p99_ms, rel=P99_TOLERANCE), (live, sim)
    assert live.qos_met_fraction == pytest.approx(sim.qos_met_fraction, abs=QOS_SHARE_TOLERANCE)


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["fcfs", "kairos"])
def test_live_router_matches_simulator_near_capacity(policy: str) -> None:
    check_against_simulator(policy)
