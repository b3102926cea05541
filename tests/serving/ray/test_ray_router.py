"""The router as a detached Ray actor on the head node: ``kairos serve --detach``, then
``kairos status``, ``kairos scale`` and ``kairos stop`` find it by name in the cluster."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from kairos.cli.main import cli
from kairos.client.admin import http_request
from kairos.serving.ray.router import HEAD_RESOURCE, router_info
from tests.serving.helpers import BODIES
from tests.serving.ray.helpers import RayTestCluster, wait_until_up

NAME = "kairos-router-test"


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_detached_router_serves_and_is_operated_by_name(ray_cluster: RayTestCluster) -> None:
    import ray

    address = ray_cluster.address
    out = run(
        "serve",
        "--model",
        "rm2",
        "--pool",
        "r5n.large=1",
        "--backend",
        "ray",
        "--address",
        address,
        "--detach",
        "--port",
        "0",
        "--time-scale",
        "0.1",
    )
    # (the test process is a driver of the cluster already: the CLI reuses its connection)
    assert "runs detached" in out and ", ready" in out
    url = out.split("url:")[1].split()[0]
    actor = ray.get_actor("kairos-router", namespace="kairos")
    nodes: list[dict[str, Any]] = ray.nodes()
    (head,) = [n["NodeID"] for n in nodes if n["Alive"] and HEAD_RESOURCE in n["Resources"]]
    assert router_info(actor)["node"] == head

    status, text = http_request(url + "/v2/models/rm2/infer", BODIES.body(4))
    assert status == 200, text
    assert orjson.loads(text)["parameters"]["instance_type"] == "r5n.large"

    shown = run("status", "--address", address)
    assert f"router:  {url}" in shown and f"metrics: {url}/metrics" in shown
    (row,) = [line for line in shown.splitlines() if line.lstrip().startswith("0 ")]
    assert "r5n.large" in row and " up " in f" {row} "
    assert any(node in row for node in ray_cluster.node_ids("r5n.large"))

    scaled = run("scale", "--address", address, "--pool", "r5n.large=1,g4dn.xlarge=1")
    assert "added:   1 (g4dn.xlarge)" in scaled
    wait_until_up(url, 2)

    assert "stopped the router" in run("stop", "--address", address)
    with pytest.raises(ValueError):
        ray.get_actor("kairos-router", namespace="kairos")
