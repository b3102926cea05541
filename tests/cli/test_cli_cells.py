"""``--cells`` on simulate, capacity and plan: one cell is the central queue, and bad
combinations are one line with a fix."""

from __future__ import annotations

import json

import pytest

from tests.cli.test_bad_inputs import refused
from tests.cli_runner import run

POOL = "g4dn.xlarge=1,r5n.large=3"
FAST = ["--queries", "200", "--precision", "0.1"]


def test_capacity_one_cell_is_the_central_queue(capsys):
    code, out, err = run(
        capsys, "capacity", "--model", "rm2", "--pool", POOL, *FAST, "--cells", "1", "--json"
    )
    assert code == 0, err
    got = json.loads(out)
    assert got["allowable_qps"] == got["central_allowable_qps"] > 0
    assert got["celled_over_central"] == 1.0
    assert got["cells"] == 1 and got["cell_pools"] == [POOL]


def test_simulate_one_cell_reports_the_central_figures(capsys):
    argv = ["simulate", "--model", "rm2", "--pool", POOL, "--rate-qps", "20", "--queries", "300"]
    code, out, err = run(capsys, *argv, "--cells", "1", "--json")
    assert code == 0, err
    got = json.loads(out)
    for k in ("throughput_qps", "p50_ms", "p99_ms", "qos_met_fraction"):
        assert got[f"celled_{k}"] == got[k]
    assert got["splitter"] == "least-outstanding"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["capacity", "--pool", POOL, "--cells", "5"], "cell count 5 exceeds the pool's 4"),
        (
            ["simulate", "--autoscaler", "kairos", "--rate-qps", "5", "--cells", "2"],
            "--cells 2 applies to a fixed pool",
        ),
        (["plan", "--target-qps", "50", "--cells", "2"], "planned within a budget"),
        (
            ["plan", "--budget-per-hr", "5", "--cells", "2", "--max-cell-qps", "10"],
            "both set the cell count",
        ),
        (["plan", "--budget-per-hr", "5", "--cells", "2", "--max", "r5n.large=3"], "--max caps"),
    ],
)
def test_bad_cell_command_lines(capsys, argv, needle):
    assert needle in refused(capsys, *argv)


def test_plan_cells_writes_a_cluster_with_a_router_node_per_cell(capsys, tmp_path):
    out = tmp_path / "cells.yaml"
    argv = ["plan", "--model", "rm2", "--budget-per-hr", "2", "--cells", "2", "--verify", "1"]
    code, stdout, err = run(capsys, *argv, "--ray-cluster", str(out), "--json")
    assert code == 0, err
    pool = json.loads(stdout)["pool"]
    text = out.read_text()
    assert f"--pool {pool} --backend ray --address auto --cells 2 " in text
    assert '"kairos-router":' in text or "kairos-router:" in text
