"""Helpers for the Ray tests: the test cluster's handle, the router's admin view, load."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import urllib.error
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from kairos.aio import run_event_loop
from kairos.client.admin import http_request
from kairos.client.loadgen import LoadReport, LoadSpec, run_load
from kairos.serving.ray.session import NICENESS_VARIABLE
from kairos.workload import production_mix

TYPES = ("g4dn.xlarge", "r5n.large")
UNITS = 4  # instances of its type one test node can host
LOOPBACK = "127.0.0.1"
WAIT_S = 60.0
LOAD_LIMIT_S = 120.0  # no load run (with its fault) takes longer than this


@dataclass
class RayTestCluster:
    """The session's cluster and the nodes of each instance type in it."""

    cluster: Any
    address: str
    type_nodes: dict[str, list[Any]] = field(default_factory=dict)

    def add_type_node(self, instance_type: str) -> Any:
        from benchmarks.rayserve_app import type_node_resources
        from kairos.serving.ray.pool import TYPE_LABEL, type_resource

        node = self.cluster.add_node(
            num_cpus=1,
            node_ip_address=LOOPBACK,
            # also one instance of the type for the Ray Serve app (test_ray_serve_app.py)
            resources={
                type_resource(instance_type): UNITS,
                **type_node_resources(instance_type, 1),
            },
            labels={TYPE_LABEL: instance_type},
        )
        self.type_nodes.setdefault(instance_type, []).append(node)
        return node

    def remove_node(self, node: Any) -> None:
        for nodes in self.type_nodes.values():
            if node in nodes:
                nodes.remove(node)
        self.cluster.remove_node(node)

    def node_ids(self, instance_type: str) -> set[str]:
        return {n.node_id for n in self.type_nodes.get(instance_type, [])}


PROXY_READY_VARIABLE = "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"


@contextlib.contextmanager
def typed_cluster() -> Iterator[RayTestCluster]:
    """A ``ray.cluster_utils.Cluster`` on 127.0.0.1, joined as a driver: a head node (2 CPUs,
    no instance type) and one node per type of ``TYPES`` (``RayTestCluster.add_type_node``).
    The caller must already be in a loopback-only network namespace (``tests.netns``): the
    Ray tests' fixture enters one, and so does ``benchmarks/bench_conformance.py``."""
    import ray
    from ray.cluster_utils import Cluster

    from benchmarks.rayserve_app import HEAD_RESOURCES

    cluster = None
    # The head's workers run at niceness 0, the type nodes' at Ray's default 15 (the variable
    # is read by each node's raylet when it starts). Ray Serve's controller and proxy live on
    # the head and are Ray workers: at 15 they got almost no CPU beside other work (with two
    # busy loops running, the proxy was not up within serve.start's 60 s), while the
    # instances, which must move themselves back to 0, still start at 15 on the type nodes.
    # Serve's controller gives a new proxy 5 s to answer its first ready check, then kills
    # and replaces it while serve.start() waits on the first one: 60 s, serve.start's own wait.
    saved = os.environ.get(NICENESS_VARIABLE)
    saved_ready = os.environ.get(PROXY_READY_VARIABLE)
    os.environ[NICENESS_VARIABLE] = "0"
    os.environ[PROXY_READY_VARIABLE] = "60"
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 2,
                "include_dashboard": False,
                "node_ip_address": LOOPBACK,
                "resources": HEAD_RESOURCES,  # the Ray Serve app's ingress goes there
                # Each of these is one more Python process importing Ray at start-up (about
                # 1 s of CPU each), and nothing here uses them: no autoscaler (the tests add
                # and remove nodes themselves) and no log forwarding (every driver here
                # passes log_to_driver=False).
                "no_monitor": True,
                "include_log_monitor": False,
            },
        )
        _restore(NICENESS_VARIABLE, saved)
        handle = RayTestCluster(cluster, cluster.address)
        for t in TYPES:
            handle.add_type_node(t)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace="kairos", log_to_driver=False)
        yield handle
    finally:
        _restore(NICENESS_VARIABLE, saved)
        _restore(PROXY_READY_VARIABLE, saved_ready)
        with contextlib.suppress(Exception):
            ray.shutdown()
        if cluster is not None:
            cluster.shutdown()


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def admin_pool(url: str) -> dict[str, Any]:
    status, text = http_request(url + "/v2/admin/pool")
    assert status == 200, text
    doc: dict[str, Any] = orjson.loads(text)
    return doc


def wait_until_up(url: str, n: int, timeout_s: float = WAIT_S) -> list[dict[str, Any]]:
    """The active instances once ``n`` of them are up (fails after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    workers: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, urllib.error.URLError):
            workers = [w for w in admin_pool(url)["workers"] if w["state"] != "removed"]
            if len(workers) == n and all(w["state"] == "up" for w in workers):
                return workers
        time.sleep(0.1)
    raise AssertionError(f"not {n} instances up within {timeout_s} s: {workers}")


def metric(url: str, name: str) -> float:
    """The value of an unlabelled counter or gauge on the router's /metrics."""
    status, text = http_request(url + "/metrics")
    assert status == 200
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def load_while(
    url: str,
    model: str,
    action: Callable[[], None],
    *,
    rate_qps: float,
    duration_s: float,
    seed: int,
) -> LoadReport:
    """Open-loop load (``rate_qps`` for ``duration_s`` profile seconds) from a thread while
    ``action`` runs here (Ray's node start-up must run on the main thread); the report once
    every query is answered (bounded by ``LOAD_LIMIT_S``)."""
    spec = LoadSpec(
        url,
        model,
        rate_qps,
        duration_s,
        production_mix(),
        seed=seed,
        request_timeout_s=LOAD_LIMIT_S / 2,
    )
    results: list[LoadReport | BaseException] = []

    def load() -> None:
        try:
            results.append(run_event_loop(run_load(spec)))
        except BaseException as exc:  # re-raised in the test's thread
            results.append(exc)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        action()
    finally:
        thread.join(LOAD_LIMIT_S)
    assert results, f"the load did not finish within {LOAD_LIMIT_S} s"
    if isinstance(results[0], BaseException):
        raise results[0]
    return results[0]


def assert_none_lost(report: LoadReport) -> None:
    assert report.sent > 0
    assert report.completed == report.sent, report.status_counts
    assert report.errors == 0 and report.rejected == 0, report.status_counts


def wait_gone(pid: int, timeout_s: float = 30.0) -> None:
    """Returns once process ``pid`` (a removed instance's) has exited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} of a removed instance still runs")
