"""The Ray Serve side of benchmarks/bench_vs_ray_serve.py, live on the Ray tests' shared
cluster (its head and type nodes declare the app's resources, ``helpers.typed_cluster``):
the pool with the replay worker, one deployment per type behind Ray Serve's proxy and
default router, then one deployment with the custom request router; one query each way.
The cost-router's choices without a cluster: ``test_ray_serve_router.py``.

The probes run in this process, a driver of the shared cluster, through the function the
benchmark's ``--probe`` self-test calls, rather than in a second cluster of its own: that
cost a second cluster start and a second namespace, about 40 s of a test worker's time.
Skipped, saying why, where ray[serve] is missing (``pip install 'kairos[bench]'``), checked
when the test runs: the check imports Ray Serve, which cost every test worker seconds of CPU
when it ran at collection.
"""

from __future__ import annotations

import socket

import pytest

from benchmarks.rayserve_app import ray_serve_missing
from kairos.catalog import Pool
from kairos.scenario import Scenario
from tests.serving.ray.helpers import LOOPBACK, RayTestCluster

GPU, CPU = "g4dn.xlarge", "r5n.large"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def test_ray_serve_answers_through_its_proxy_with_the_replay_worker(
    ray_cluster: RayTestCluster,
) -> None:
    if why := ray_serve_missing():
        pytest.skip(why)
    from ray import serve

    from benchmarks.rayserve_app import probe_configurations

    sc = Scenario.build("dien")
    try:
        found = probe_configurations(
            sc,
            Pool.parse(f"{GPU}=1,{CPU}=1"),
            "per-type:default:3;pooled:kairos-cost:900,5",
            # The router places a query by its deadline (arrival + QoS, 35 ms for dien): at
            # time scale 1 a busy host's proxy can take longer than the 17 ms of slack the
            # 900-row query has on the GPU before it routes, and a query already late goes to
            # the cheaper CPU (seen under load). Scaled 50x, the slack is 0.85 s of wall time.
            50.0,
            free_port(),
        )
    finally:
        serve.shutdown()  # the other tests' cluster gets its head and type nodes back
    (plain,) = found["per-type:default"]
    assert plain["status"] == 200 and plain["rows"] == 3
    # The replay worker slept a service time drawn from its type's profile.
    lo = float(sc.profiles.get(plain["instance_type"]).quantile_ms(3.0, 0.0))
    assert plain["service_ms"] >= 0.9 * lo
    big, small = found["pooled:kairos-cost"]
    assert (big["rows"], big["instance_type"]) == (900, GPU)
    assert (small["rows"], small["instance_type"]) == (5, CPU)
