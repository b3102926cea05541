"""The live router with time-scaled replay workers agrees with the simulator.

Same seeded arrivals and batch sizes through ``simulate`` and through a real router; the
service-time draws differ (the workers sample their own), so agreement is statistical:
throughput within 10% and p99 latency within 25% (stated tolerance; the router's own wall
overhead, under a millisecond of wall time per hop, is inflated by 1 / time scale in profile
time, which is why live p99 runs a few percent above the simulator's).
"""

from __future__ import annotations

import numpy as np
import pytest

from kairos.catalog import Pool
from kairos.distributor import policy_names
from kairos.runtime.aio import run_event_loop
from kairos.runtime.launch import running_router
from kairos.runtime.loadgen import LoadSpec, run_load
from kairos.scenario import Scenario
from kairos.sim.capacity import allowable_throughput
from kairos.sim.engine import simulate
from kairos.workload import poisson_stream

POOL = "g4dn.xlarge=1,r5n.large=2"
TIME_SCALE = 0.2
QUERIES = 800
THROUGHPUT_TOLERANCE = 0.10
P99_TOLERANCE = 0.25


@pytest.mark.slow
@pytest.mark.parametrize("policy", [p for p in ("fcfs", "kairos") if p in policy_names()])
def test_live_router_matches_simulator(policy: str) -> None:
    scenario = Scenario.build("rm2")
    pool = Pool.parse(POOL)
    rate = 0.6 * allowable_throughput(scenario, pool, policy, queries=2000).allowable_qps
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
    ]
    with running_router(args, ready_timeout_s=60) as router:
        spec = LoadSpec(router.url, "rm2", rate, 0.0, scenario.mix, seed=11)
        live = run_event_loop(run_load(spec, stream=stream))
    print(
        f"{policy}: live {live.throughput_qps:.2f} q/s p99 {live.p99_ms:.1f} ms | "
        f"sim {sim.throughput_qps:.2f} q/s p99 {sim.p99_ms:.1f} ms"
    )
    assert live.completed == live.sent == QUERIES
    assert live.throughput_qps == pytest.approx(sim.throughput_qps, rel=THROUGHPUT_TOLERANCE)
    assert live.p99_ms == pytest.approx(sim.p99_ms, rel=P99_TOLERANCE), (live, sim)
