"""The Ray Serve side of benchmarks/bench_vs_ray_serve.py: the request router that applies
Kairos's policy to each request prefers the instance that policy's cost picks (the
expectation is derived from the profiles here, not by calling the policy; fast, no cluster).
The live app, served on the Ray tests' shared cluster: ``test_ray_serve_app.py``.

It sits with the Ray tests (one test worker) because it imports Ray Serve: a few seconds of
CPU that every test worker paid at collection when the check for ray[serve] was made on
import (and when this file was tests/bench/test_ray_serve.py, on another worker again).
Skipped, saying why, where ray[serve] is missing (``pip install 'kairos[bench]'``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from benchmarks.rayserve_app import ray_serve_missing
from kairos.scenario import Scenario


@pytest.fixture(autouse=True)
def ray_serve_installed() -> None:
    """Skip where ray[serve] is missing; checked when a test runs, not at collection."""
    if why := ray_serve_missing():
        pytest.skip(why)


GPU, CPU = "g4dn.xlarge", "r5n.large"


def make_router(types: list[str]) -> tuple[Any, list[Any]]:
    """A ``KairosCostRouter`` over fake replicas (one per entry of ``types``, in order)."""
    from ray.serve._private.common import DeploymentHandleSource, DeploymentID

    from benchmarks import rayserve_router

    router = rayserve_router.KairosCostRouter(
        deployment_id=DeploymentID(name="replay-pool", app_name="test"),
        handle_source=DeploymentHandleSource.REPLICA,
    )
    router.initialize_state(model="dien", qos_ms=35.0)
    replicas: list[Any] = [
        SimpleNamespace(replica_id=f"r{k}", node_id=f"node-{t}") for k, t in enumerate(types)
    ]
    router._node_types = {f"node-{t}": t for t in set(types)}
    router._replicas = {r.replica_id: r for r in replicas}
    router._rebuild()
    return router, replicas


def choose(router: Any, batch: int) -> list[list[Any]]:
    pending = SimpleNamespace(args=[batch, b"", None], created_at=time.time())
    loop = asyncio.get_event_loop_policy().get_event_loop()  # one loop, as in Ray Serve
    return loop.run_until_complete(
        router.choose_replicas(list(router.curr_replicas.values()), pending)
    )


@pytest.fixture(autouse=True)
def event_loop_for_router() -> Iterator[None]:
    asyncio.set_event_loop(asyncio.new_event_loop())
    yield
    asyncio.get_event_loop_policy().get_event_loop().close()
    asyncio.set_event_loop(None)


def test_router_prefers_the_instance_kairos_cost_picks() -> None:
    sc = Scenario.build("dien")
    est = {
        (t, b): float(sc.profiles.get(t).mean_ms(float(b))) for t in (GPU, CPU) for b in (5, 900)
    }
    coeff = sc.profiles.heterogeneity((GPU, CPU))
    # What the cost says, from the profiles: a batch of 900 meets QoS on the GPU only; a batch
    # of 5 meets it on both, and the CPU's weighted finish time is the lower.
    assert est[(GPU, 900)] < sc.qos_ms < est[(CPU, 900)]
    assert coeff[CPU] * est[(CPU, 5)] < coeff[GPU] * est[(GPU, 5)] < sc.qos_ms

    router, (gpu, cpu) = make_router([GPU, CPU])
    assert choose(router, 900) == [[gpu]]
    assert choose(router, 5) == [[cpu]]
    # The GPU listed last changes nothing (the choice is by cost, not position).
    router, (cpu2, gpu2) = make_router([CPU, GPU])
    assert choose(router, 900) == [[gpu2]]

    # The GPU busy with a small query: a large one waits for it (no rank offered, Ray Serve
    # retries) rather than take the idle CPU where it would miss QoS, since after the small
    # one it still finishes in time; a small one still goes to the CPU.
    assert est[(GPU, 5)] + est[(GPU, 900)] < sc.qos_ms
    router, (gpu, cpu) = make_router([GPU, CPU])
    router._chosen_batch[gpu.replica_id] = 5
    router.on_send_request(gpu.replica_id)
    accepted = SimpleNamespace(
        args=[5, b"", None], metadata=SimpleNamespace(internal_request_id="a")
    )
    router.on_request_routed(accepted, gpu.replica_id, None)
    assert choose(router, 900) == []
    assert choose(router, 5) == [[cpu]]
    # A request the busy GPU rejected completes at once: the GPU is still busy.
    router.on_request_completed(gpu.replica_id, "b")
    assert choose(router, 900) == []
    router.on_request_completed(gpu.replica_id, "a")
    assert choose(router, 900) == [[gpu]]
