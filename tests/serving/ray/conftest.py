"""One Ray cluster for the Ray tests, inside a network namespace of their own.

The ``ray_cluster`` fixture (package scope: started at the first test that asks for it, torn
down after the last test of ``tests/serving/ray``; every test that needs a cluster lives here,
so a session starts one cluster, and the tests outside run outside the namespace) first moves
the test process into a fresh network namespace with loopback only (``tests.netns``:
``unshare(CLONE_NEWNET)`` from the main thread, as root), so Ray, the routers, the workers and
the load generator started from here can bind nothing but 127.0.0.1; teardown moves the
process back. Then it starts a ``ray.cluster_utils.Cluster`` (``helpers.typed_cluster``, which
``benchmarks/bench_conformance.py`` uses too): a head node (2 CPUs, no instance type) and one
node per instance type, 1 CPU each, offering the type's resource (``kairos/TYPE``, ``UNITS``
of it) and label, and joins it as a driver. The type nodes' workers keep Ray's niceness 15:
kairos's actors must move themselves back to 0 (a test checks it); the head's run at 0, for Ray
Serve's controller and proxy (``helpers.typed_cluster`` says why). Placement, node loss and
re-placement are real Ray behaviour across these nodes; only the machines are one.

Without Ray installed, or without the right to create a namespace, the tests that need the
cluster are skipped with the reason (CI installs Ray with the test extras and runs as root).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.serving.ray.helpers import RayTestCluster, typed_cluster


@pytest.fixture(scope="package")
def ray_cluster() -> Iterator[RayTestCluster]:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'kairos[ray]')")
    from tests.netns import NamespaceUnavailable, enter_loopback_namespace

    try:
        namespace = enter_loopback_namespace()
    except NamespaceUnavailable as exc:
        pytest.skip(f"no private network namespace for Ray here: {exc}")
    try:
        with typed_cluster() as handle:
            yield handle
    finally:
        namespace.leave()
