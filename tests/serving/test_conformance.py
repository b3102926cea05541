"""A live router with time-scaled replay workers answers every query of a seeded stream near
capacity.

The seeded arrivals and batch sizes the simulator gets (rm2, Poisson at 0.9 x the pool's
simulated allowable throughput) go through a real router: every query is sent and answered 200,
none refused or lost, whatever the host's timers do. The queue limit (``RouterConfig``'s
default, 1000) is above the stream's length, so no refusal is allowed for load either.

How close the live throughput, p99 latency and share within QoS come to the simulator's is a
timing figure, which a busy or jittery host moves: ``benchmarks/bench_conformance.py`` prints
those ratios (local and Ray backends) and asserts nothing about them. The exact check that
the router dispatches as the simulator does, query by query, is
``tests/serving/router/test_router_driver.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from kairos.aio import run_event_loop
from kairos.catalog import Pool
from kairos.client.launch import running_router
from kairos.client.loadgen import LoadReport, LoadSpec, run_load
from kairos.scenario import Scenario
from kairos.sim.capacity import allowable_throughput
from kairos.workload import poisson_stream

POOL = "g4dn.xlarge=1,r5n.large=2"
TIME_SCALE = 0.25
QUERIES = 300  # a few wall seconds; the figures' stream (1500) is the benchmark's
LOAD = 0.9  # of the simulated allowable throughput


def serve_seeded_stream(
    policy: str,
    backend_args: Sequence[str] = (),
    ready_timeout_s: float = 60,
    on_ready: Callable[[str, int], object] | None = None,
) -> LoadReport:
    """Serve ``POOL`` with ``policy`` (plus ``backend_args``) and send it the simulator's
    seeded queries at ``LOAD`` of its capacity; ``on_ready(url, instances)`` runs once the
    router answers, before any load."""
    scenario = Scenario.build("rm2")
    pool = Pool.parse(POOL)
    rate = LOAD * allowable_throughput(scenario, pool, policy).allowable_qps
    stream = poisson_stream(rate, QUERIES, scenario.mix, np.random.default_rng(11))
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
        spec = LoadSpec(router.url, "rm2", rate, 0.0, scenario.mix, seed=11)
        return run_event_loop(run_load(spec, stream=stream))


def assert_every_query_answered(report: LoadReport) -> None:
    assert report.completed == report.sent == QUERIES, report.status_counts
    assert report.errors == 0 and report.rejected == 0, report.status_counts
    assert report.status_counts == {"200": QUERIES}


@pytest.mark.parametrize("policy", ["fcfs", "kairos"])
def test_live_router_answers_every_seeded_query_near_capacity(policy: str) -> None:
    assert_every_query_answered(serve_seeded_stream(policy))
