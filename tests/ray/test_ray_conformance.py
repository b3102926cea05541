"""On the Ray backend, the live router with time-scaled replay instances agrees with the
simulator near capacity as the local backend does (the same check and tolerances as
tests/runtime/test_conformance.py), with the instances as Ray actors on the test cluster's
typed nodes."""

from __future__ import annotations

import numpy as np
import pytest

from kairos.catalog import Pool
from kairos.runtime.aio import run_event_loop
from kairos.runtime.launch import running_router
from kairos.runtime.loadgen import LoadSpec, run_load
from kairos.scenario import Scenario
from kairos.sim.capacity import allowable_throughput
from kairos.sim.engine import simulate
from kairos.workload import poisson_stream
from tests.ray.helpers import RayTestCluster, wait_until_up
from tests.runtime.helpers import wait_for_quiet_cpu
from tests.runtime.test_conformance import (
    LOAD,
    P99_TOLERANCE,
    POOL,
    QOS_SHARE_TOLERANCE,
    QUERIES,
    THROUGHPUT_TOLERANCE,
    TIME_SCALE,
)

POLICY = "kairos"


@pytest.mark.slow
def test_ray_backend_matches_simulator(ray_cluster: RayTestCluster) -> None:
    scenario = Scenario.build("rm2")
    pool = Pool.parse(POOL)
    rate = LOAD * allowable_throughput(scenario, pool, POLICY).allowable_qps
    stream = poisson_stream(rate, QUERIES, scenario.mix, np.random.default_rng(11))
    sim = simulate(scenario, pool, POLICY, stream, seed=11).records.metrics(
        scenario.qos_ms, QUERIES // 10
    )
    args = [
        "--model",
        "rm2",
        "--pool",
        POOL,
        "--policy",
        POLICY,
        "--time-scale",
        str(TIME_SCALE),
        "--seed",
        "11",
        "--backend",
        "ray",
        "--address",
        ray_cluster.address,
    ]
    with running_router(args, ready_timeout_s=120) as router:
        wait_until_up(router.url, pool.size)
        wait_for_quiet_cpu()
        spec = LoadSpec(router.url, "rm2", rate, 0.0, scenario.mix, seed=11)
        live = run_event_loop(run_load(spec, stream=stream))
    print(
        f"ray: live {live.throughput_qps:.2f} q/s p99 {live.p99_ms:.1f} ms | "
        f"sim {sim.throughput_qps:.2f} q/s p99 {sim.p99_ms:.1f} ms"
    )
    assert live.completed == live.sent == QUERIES
    assert live.throughput_qps == pytest.approx(sim.throughput_qps, rel=THROUGHPUT_TOLERANCE)
    assert live.p99_ms == pytest.approx(sim.p99_ms, rel=P99_TOLERANCE), (live, sim)
    assert live.qos_met_fraction == pytest.approx(sim.qos_met_fraction, abs=QOS_SHARE_TOLERANCE)
