"""``kairos serve --cells 2 --backend ray --address A``: each cell's router a Ray actor on a
router node of the session's cluster, HAProxy in front on this machine.

Checked exactly, with the local cells' checks (tests/serving/cells/test_cells.py): every
query through the balancer is answered by a cell; ``kairos status`` lists both cells on the
router node, each at the address the balancer sends it to; ``kairos scale --cell`` resizes a
cell through its router actor; a router actor killed under load
(``ray.kill``) leaves no query unanswered (each gets 200, or a 503 the balancer counts), a
new actor takes the cell, and the balancer follows it to its new address.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from kairos.cli.main import cli
from kairos.client.launch import running_router
from kairos.protocol.api import LISTEN_CELLS
from kairos.serving.cells.ray_hosts import router_placement
from kairos.serving.ray.placement import ROUTER_LABEL, ROUTER_RESOURCE
from kairos.serving.ray.router import HEAD_RESOURCE
from tests.serving.cells.test_cells import (
    POOL,
    _all_up,
    _cells,
    _load,
    _wait,
    killed_under_load,
    live,
)
from tests.serving.ray.helpers import LOOPBACK, RayTestCluster

ROUTERS_PER_NODE = 2


def _address(cell: dict[str, Any]) -> str:
    return str(cell["url"]).removeprefix("http://")


@pytest.fixture(scope="module")
def ray_cells(ray_cluster: RayTestCluster) -> Iterator[tuple[str, str]]:
    """The cells' URL and the router node's id: a router node joins the cluster for this
    module (and leaves after it), then kairos serve --cells joins the cluster."""
    cluster = ray_cluster.cluster
    node = cluster.add_node(
        num_cpus=0, node_ip_address=LOOPBACK, resources={ROUTER_RESOURCE: ROUTERS_PER_NODE}
    )
    try:
        cluster.wait_for_nodes()
        args = ["--model", "dien", "--pool", POOL, "--cells", "2", "--time-scale", "1"]
        args += ["--backend", "ray", "--address", ray_cluster.address]
        with running_router(args, listen=LISTEN_CELLS) as cells:
            _wait(cells.url, _all_up(2), "both cells up")
            yield cells.url, node.node_id
    finally:
        cluster.remove_node(node)


@live
def test_ray_cells_serve_behind_haproxy_from_the_router_node(
    ray_cells: tuple[str, str],
) -> None:
    url, router_node = ray_cells
    before = _wait(url, _all_up(2), "both cells up")
    assert [c["node"] for c in before["cells"]] == [router_node, router_node]
    assert all(c["balancer_addr"] == _address(c) for c in before["cells"])
    report, records = _load(url, 60.0, 1.5, seed=1)
    assert report.sent > 0
    assert report.completed == report.sent, report.status_counts
    assert int((records.status == 200).sum()) == report.sent
    after = _cells(url)
    served = [
        a["sessions"] - b["sessions"] for a, b in zip(after["cells"], before["cells"], strict=True)
    ]
    assert sum(served) == report.sent + 1, served  # and the load generator's metadata request
    shown = CliRunner().invoke(cli, ["status", "--url", url])
    assert shown.exit_code == 0, shown.output
    assert "cells:   2 behind" in shown.output
    rows = [ln for ln in shown.output.splitlines() if ln.lstrip()[:2] in ("0 ", "1 ")]
    assert len(rows) == 2 and all(" UP " in f" {r} " and " ready " in f" {r} " for r in rows)
    assert all(c["url"] in "\n".join(rows) for c in after["cells"])
    # kairos scale --cell K reaches the cell's router actor at its node's address.
    grown = "g4dn.xlarge=1,r5n.large=1"
    out = CliRunner().invoke(cli, ["scale", "--url", url, "--cell", "1", "--pool", grown])
    assert out.exit_code == 0, out.output
    doc = _wait(url, lambda d: d["cells"][1]["pool"] == grown, "cell 1 resized")
    assert doc["cells"][0]["weight"] < doc["cells"][1]["weight"] == 256


@live
def test_a_router_actor_killed_under_load_loses_no_query_and_its_cell_comes_back(
    ray_cells: tuple[str, str],
) -> None:
    import ray

    url, router_node = ray_cells
    actor = ray.get_actor("kairos-router-cell0", namespace="kairos")
    _, back = killed_under_load(url, lambda cell: ray.kill(actor))
    assert back["node"] == router_node
    assert back["balancer_addr"] == _address(back)  # moved where its new actor listens


def test_a_router_goes_to_a_router_node_when_the_cluster_has_one() -> None:
    key, value = ROUTER_LABEL
    assert router_placement({ROUTER_RESOURCE: 2.0, "CPU": 4.0}, [{key: value}]) == {
        "resources": {ROUTER_RESOURCE: 1.0}
    }
    assert router_placement({"CPU": 4.0}, [{}, {key: value}]) == {"label_selector": {key: value}}
    assert router_placement({"CPU": 4.0}, [{key: "other"}]) == {"resources": {HEAD_RESOURCE: 0.001}}
