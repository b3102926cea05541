"""On the Ray backend, the live router with time-scaled replay instances answers every query
of the simulator's seeded stream near capacity, as the local backend does (the same check:
tests/serving/test_conformance.py), with the instances as Ray actors on the test cluster's
typed nodes. The live-against-simulated figures are ``benchmarks/bench_conformance.py``'s."""

from __future__ import annotations

from tests.serving.ray.helpers import RayTestCluster, wait_until_up
from tests.serving.test_conformance import assert_every_query_answered, serve_seeded_stream


def test_ray_backend_answers_every_seeded_query_near_capacity(
    ray_cluster: RayTestCluster,
) -> None:
    report = serve_seeded_stream(
        "kairos",
        ["--backend", "ray", "--address", ray_cluster.address],
        ready_timeout_s=120,
        on_ready=wait_until_up,
    )
    assert_every_query_answered(report)
