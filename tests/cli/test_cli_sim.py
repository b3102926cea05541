from __future__ import annotations

import json

import pytest

from tests.cli_runner import run


def test_simulate_json_shape(capsys):
    code, out, _ = run(capsys, "simulate", "--rate-qps", "20", "--queries", "3000", "--json")
    assert code == 0
    data = json.loads(out)
    for key in (
        "model",
        "pool",
        "policy",
        "qos_ms",
        "cost_per_hr",
        "rate_qps",
        "queries",
        "throughput_qps",
        "p50_ms",
        "p99_ms",
        "qos_met_fraction",
    ):
        assert key in data
    assert data["model"] == "rm2" and data["qos_ms"] == 350
    assert data["throughput_qps"] == pytest.approx(20, rel=0.1)
    assert 0 <= data["qos_met_fraction"] <= 1


def test_capacity_json_shape(capsys):
    code, out, _ = run(
        capsys,
        "capacity",
        "--pool",
        "g4dn.xlarge=1",
        "--queries",
        "1000",
        "--precision",
        "0.05",
        "--json",
    )
    assert code == 0
    data = json.loads(out)
    assert data["pool"] == "g4dn.xlarge=1" and data["cost_per_hr"] == pytest.approx(0.526)
    assert data["allowable_qps"] > 0


def test_capacity_reports_zero_when_qos_impossible(capsys):
    code, out, _ = run(
        capsys, "capacity", "--model", "ncf", "--pool", "t3.xlarge=2", "--queries", "200", "--json"
    )
    assert code == 0
    data = json.loads(out)
    assert data["allowable_qps"] == 0 and "5 ms" in data["reason"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["simulate", "--rate-qps", "10", "--pool", "p3.2xlarge=1"], "p3.2xlarge"),
        (["simulate", "--rate-qps", "10", "--pool", "g4dn.xlarge=-1"], "-1"),
        (["simulate", "--rate-qps", "0"], "--rate-qps 0"),
        (["simulate", "--rate-qps", "10", "--qos-ms", "-5"], "-5"),
        (["simulate", "--rate-qps", "10", "--model", "bert"], "bert"),
        (["capacity", "--batch-mix", "fixed:x"], "fixed:x"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, argv, needle):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert needle in err and "To fix:" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_malformed_profile_file(capsys, write):
    path = write("p.csv", "model,instance_type,batch_size,latency_ms\nrm2,g4dn.xlarge,10,oops\n")
    code, _, err = run(
        capsys, "simulate", "--rate-qps", "5", "--profiles", str(path), "--pool", "g4dn.xlarge=1"
    )
    assert code == 2 and "oops" in err


def test_policy_options_reach_the_policy(capsys):
    base = ["simulate", "--rate-qps", "100", "--queries", "3000", "--policy", "kairos", "--json"]
    code, out, _ = run(capsys, *base)
    default = json.loads(out)
    code, out, _ = run(capsys, *base, "--policy-option", "paper=true")
    paper = json.loads(out)
    assert code == 0
    assert paper["p99_ms"] != default["p99_ms"]  # the literal matching decides differently
    code, _, err = run(capsys, *base, "--policy-option", "window_factor=0")
    assert code == 2 and "window_factor" in err
    code, _, err = run(capsys, *base, "--policy-option", "nonsense")
    assert code == 2 and "KEY=VALUE" in err


def test_simulate_replays_a_trace(capsys, write):
    rows = "\n".join(f"{i * 0.1:.1f},{100 + 10 * (i % 3)}" for i in range(50))
    trace = write("trace.csv", "arrival_s,batch_size\n" + rows + "\n")
    code, out, _ = run(capsys, "simulate", "--trace", str(trace), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["queries"] == 50 and data["rate_qps"] == pytest.approx(50 / 4.9)
    assert data["qos_met_fraction"] == 1.0  # 10 qps is light for the reference pool
    code, _, err = run(capsys, "simulate")
    assert code == 2 and "--trace" in err
