"""Simulations as Ray tasks give the serial run's numbers, in order."""

from __future__ import annotations

import functools

import pytest

from kairos.catalog import Pool
from kairos.errors import PoolError
from kairos.scenario import Scenario
from kairos.serving.ray.jobs import ray_map
from kairos.sim.capacity import allowable_throughput
from tests.serving.ray.helpers import RayTestCluster

POOLS = ("g4dn.xlarge=1", "g4dn.xlarge=2", "g4dn.xlarge=1,r5n.large=2", "g4dn.xlarge=1,r5n.large=1")


def test_ray_map_equals_the_serial_run(ray_cluster: RayTestCluster) -> None:
    search = functools.partial(
        allowable_throughput, Scenario.build("rm2"), policy="kairos", queries=400, seed=7
    )
    pools = [Pool.parse(p) for p in POOLS]
    serial = [search(p).allowable_qps for p in pools]
    finished: list[int] = []
    parallel = [
        r.allowable_qps for r in ray_map(search, pools, progress=lambda i, r: finished.append(i))
    ]
    assert parallel == serial
    assert sorted(finished) == list(range(len(pools)))  # each reported once, as it finished
    assert len(set(serial)) == len(serial)  # distinct values: the order is really checked


def test_an_error_in_a_job_is_raised_as_itself(ray_cluster: RayTestCluster) -> None:
    with pytest.raises(PoolError, match="nope"):
        ray_map(Pool.parse, ["r5n.large=1", "nope"])


def test_compare_on_the_ray_backend_equals_the_serial_compare(
    ray_cluster: RayTestCluster,
) -> None:
    from kairos.compare import CompareSettings, compare
    from kairos.sim.capacity import Measurer
    from kairos.sim.parallel import Parallelism, make_executor

    scenario = Scenario.build("rm2")
    settings = CompareSettings(
        queries=400, precision=0.05, top_k=3, schemes=("homogeneous", "kairos")
    )
    serial = compare(scenario, 1.5, settings)
    with make_executor(Parallelism(backend="ray", jobs=2)) as executor:
        on_ray = compare(scenario, 1.5, settings, measurer=Measurer(executor))
    assert [s.as_dict() for s in on_ray.schemes] == [s.as_dict() for s in serial.schemes]
