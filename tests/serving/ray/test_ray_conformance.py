"""On the Ray backend, the live router with time-scaled replay instances agrees with the
simulator near capacity as the local backend does (the same check and tolerances as
tests/serving/test_conformance.py), with the instances as Ray actors on the test cluster's
typed nodes."""

from __future__ import annotations

import pytest

from tests.serving.ray.helpers import RayTestCluster, wait_until_up
from tests.serving.test_conformance import check_against_simulator


@pytest.mark.slow
def test_ray_backend_matches_simulator(ray_cluster: RayTestCluster) -> None:
    check_against_simulator(
        "kairos",
        ["--backend", "ray", "--address", ray_cluster.address],
        ready_timeout_s=120,
        on_ready=wait_until_up,
    )
