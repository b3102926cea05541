"""The Ray backend under faults and resizes: one router (``kairos serve --backend ray``) on the
test cluster serves time-scaled replay instances while actors are killed, a node is lost and
replaced, and the pool is scaled up and down; no query may be lost.

The tests share the router (starting one costs seconds) and run in file order; each first
waits until every instance is up, so each also holds alone.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from kairos.cli.main import cli
from kairos.client.launch import RouterProcess, running_router
from tests.netns import foreign_sockets, only_loopback_interfaces
from tests.serving.ray.helpers import (
    RayTestCluster,
    admin_pool,
    assert_none_lost,
    load_while,
    metric,
    wait_gone,
    wait_until_up,
)

MODEL = "rm2"
POOL = "g4dn.xlarge=1,r5n.large=2"
TIME_SCALE = 0.2
RATE_QPS = 12.0  # profile q/s: ~40% of the pool's allowable 28.6, more than g4dn alone serves
DURATION_S = 40.0  # profile seconds: 8 s of wall time, 480 queries


@pytest.fixture(scope="module")
def router(ray_cluster: RayTestCluster) -> Iterator[RouterProcess]:
    args = [
        "--model",
        MODEL,
        "--pool",
        POOL,
        "--policy",
        "kairos",
        "--backend",
        "ray",
        "--address",
        ray_cluster.address,
        "--time-scale",
        str(TIME_SCALE),
        "--max-queue",
        "100000",
        "--seed",
        "5",
    ]
    with running_router(args, ready_timeout_s=120) as handle:
        wait_until_up(handle.url, 3)
        yield handle


def _assert_placed_by_type(ray_cluster: RayTestCluster, workers: list[dict]) -> None:
    assert {w["instance_type"] for w in workers} == set(ray_cluster.type_nodes)
    for w in workers:  # not on the head, not on a node of the other type
        assert w["node"] in ray_cluster.node_ids(w["instance_type"]), w
        assert w["address"].startswith("127.0.0.1:")


def test_instances_run_on_nodes_of_their_type_only(
    ray_cluster: RayTestCluster, router: RouterProcess
) -> None:
    _assert_placed_by_type(ray_cluster, wait_until_up(router.url, 3))


def test_instances_serve_at_normal_priority(router: RouterProcess) -> None:
    """Ray starts workers at niceness 15 (per thread); an instance must not keep it."""
    for w in wait_until_up(router.url, 3):
        threads = Path(f"/proc/{w['pid']}/task").iterdir()
        nice = {int((t / "stat").read_text().rsplit(")", 1)[1].split()[16]) for t in threads}
        assert nice == {0}, w


def test_label_placement_also_lands_on_nodes_of_the_type(ray_cluster: RayTestCluster) -> None:
    args = [
        "--model",
        MODEL,
        "--pool",
        "g4dn.xlarge=1,r5n.large=1",
        "--backend",
        "ray",
        "--address",
        ray_cluster.address,
        "--ray-placement",
        "label",
    ]
    with running_router(args, ready_timeout_s=120) as handle:
        _assert_placed_by_type(ray_cluster, wait_until_up(handle.url, 2))


def test_everything_stays_on_loopback(ray_cluster: RayTestCluster, router: RouterProcess) -> None:
    import ray

    assert only_loopback_interfaces()
    assert {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]} == {"127.0.0.1"}
    assert foreign_sockets() == []


def test_a_killed_actor_is_restarted_and_no_query_is_lost(router: RouterProcess) -> None:
    workers = wait_until_up(router.url, 3)
    victim = next(w for w in workers if w["instance_type"] == "r5n.large")
    failures_before = metric(router.url, "kairos_worker_failures_total")

    def kill() -> None:
        time.sleep(2.0)
        os.kill(victim["pid"], signal.SIGKILL)

    report = load_while(router.url, MODEL, kill, rate_qps=RATE_QPS, duration_s=DURATION_S, seed=1)
    assert_none_lost(report)
    after = {w["instance"]: w for w in wait_until_up(router.url, 3)}
    back = after[victim["instance"]]
    assert back["pid"] != victim["pid"]  # Ray restarted the actor: a new process
    assert back["address"] != victim["address"]  # ... which bound a new port
    assert metric(router.url, "kairos_worker_failures_total") > failures_before


def test_a_lost_node_comes_back_on_a_new_node_and_no_query_is_lost(
    ray_cluster: RayTestCluster, router: RouterProcess
) -> None:
    wait_until_up(router.url, 3)
    (lost,) = ray_cluster.type_nodes["r5n.large"]
    hosted = [w["instance"] for w in admin_pool(router.url)["workers"] if w["node"] == lost.node_id]
    assert len(hosted) == 2
    replacement = []

    def lose_and_replace() -> None:
        time.sleep(1.5)
        ray_cluster.remove_node(lost)
        for _ in range(200):  # both instances must be seen down before a node comes back
            down = [w for w in admin_pool(router.url)["workers"] if w["instance"] in hosted]
            if all(w["state"] == "down" for w in down):
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"instances {hosted} not marked down: {down}")
        replacement.append(ray_cluster.add_type_node("r5n.large"))

    report = load_while(
        router.url, MODEL, lose_and_replace, rate_qps=RATE_QPS, duration_s=DURATION_S, seed=2
    )
    assert_none_lost(report)
    after = {w["instance"]: w for w in wait_until_up(router.url, 3)}
    assert {after[j]["node"] for j in hosted} == {replacement[0].node_id}


def test_kairos_scale_up_and_down_under_load_loses_nothing(
    ray_cluster: RayTestCluster, router: RouterProcess
) -> None:
    wait_until_up(router.url, 3)
    runner = CliRunner()
    outputs = []

    def scale_up_then_down() -> None:
        for pool, n in (("g4dn.xlarge=1,r5n.large=3", 4), ("g4dn.xlarge=1,r5n.large=1", 2)):
            time.sleep(1.0)
            result = runner.invoke(cli, ["scale", "--pool", pool, "--url", router.url])
            assert result.exit_code == 0, result.output
            outputs.append(result.output)
            wait_until_up(router.url, n)

    report = load_while(
        router.url, MODEL, scale_up_then_down, rate_qps=RATE_QPS, duration_s=DURATION_S, seed=3
    )
    assert_none_lost(report)
    up, down = outputs
    assert "-> g4dn.xlarge=1,r5n.large=3" in up and "(r5n.large)" in up.split("added:")[1]
    assert "removed: -" in up
    assert "-> g4dn.xlarge=1,r5n.large=1" in down and "added:   -" in down
    workers = admin_pool(router.url)["workers"]
    removed = [w for w in workers if w["state"] == "removed"]
    assert len(removed) == 2 and all(w["instance_type"] == "r5n.large" for w in removed)
    active = [w for w in workers if w["state"] != "removed"]
    assert sorted(w["instance_type"] for w in active) == ["g4dn.xlarge", "r5n.large"]
    for w in active:
        assert w["node"] in ray_cluster.node_ids(w["instance_type"])
    for w in removed:  # the removed instances' actors are gone, not restarted
        wait_gone(w["pid"])
