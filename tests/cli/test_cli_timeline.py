"""``kairos trace`` and ``kairos simulate --trace --autoscaler``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kairos.catalog import Pool
from kairos.cli import simulate as simulate_cli
from kairos.registry import Registry
from kairos.scenario import Scenario
from kairos.sim.autoscale import Observation
from kairos.sim.engine import simulate
from kairos.workload import load_trace
from tests.cli_runner import run


class Doubling:
    """g4dn.xlarge=1 at first, g4dn.xlarge=2 from the 60 s tick on."""

    name = "doubling"

    def __init__(self, context) -> None:
        self.context = context

    def decide(self, obs: Observation) -> Pool | None:
        return Pool.of({"g4dn.xlarge": 2 if obs.now_s >= 60 else 1})


@pytest.fixture
def doubling(monkeypatch):
    registry: Registry = Registry("autoscaler", "pass --autoscaler doubling.")
    registry.add("doubling", Doubling)
    seen: list = []

    def spy(ctx) -> Doubling:
        seen.append(ctx)
        return Doubling(ctx)

    registry.add("spy", spy)
    monkeypatch.setattr(simulate_cli, "AUTOSCALERS", registry)
    return seen


def test_trace_writes_the_same_file_for_the_same_seed(capsys, tmp_path):
    a, b, c = (tmp_path / n for n in ("a.csv", "b.csv", "c.csv"))
    base = ["trace", "diurnal", "--duration-s", "300", "--peak-qps", "20", "--trough-qps", "5"]
    code, out, _ = run(capsys, *base, "--out", str(a), "--seed", "4", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["queries"] == len(load_trace(a)) and data["shape"] == "diurnal"
    run(capsys, *base, "--out", str(b), "--seed", "4")
    run(capsys, *base, "--out", str(c), "--seed", "5")
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    code, out, _ = run(capsys, "trace", "on-off", "--out", str(a), "--duration-s", "600")
    assert code == 0 and "on-off" in out


def test_simulate_with_an_autoscaler_reports_cost_qos_and_actions(capsys, tmp_path, doubling):
    trace = tmp_path / "t.csv"
    run(
        capsys,
        "trace",
        "step",
        "--out",
        str(trace),
        "--duration-s",
        "180",
        "--peak-qps",
        "6",
        "--trough-qps",
        "2",
    )
    argv = ["simulate", "--trace", str(trace), "--boot-s", "30", "--min-charge-s", "0"]
    code, out, err = run(capsys, *argv, "--autoscaler", "doubling", "--json")
    assert code == 0 and err == ""  # no progress lines off a terminal
    data = json.loads(out)
    assert data["queries"] == len(load_trace(trace)) and data["scale_actions"] == 1
    assert data["actions"] == [{"time_s": 60.0, "from": "g4dn.xlarge=1", "to": "g4dn.xlarge=2"}]
    # one g4dn.xlarge ($0.526/h) all along, a second from 60 s; billed to the last answer
    end = data["duration_s"]
    assert data["cost_dollars"] == pytest.approx(0.526 * (end + end - 60) / 3600, abs=1e-4)
    assert 0 <= data["qos_share"] <= 1 and data["minutes"] == 3
    plot = tmp_path / "timeline.png"
    code, out, _ = run(capsys, *argv, "--autoscaler", "spy", "--plot", str(plot), "--tick-s", "5")
    assert code == 0 and plot.stat().st_size > 10_000
    for label in ("cost", "within QoS", "worst minute", "minutes below 99%", "scale actions"):
        assert label in out
    (ctx,) = doubling
    assert ctx.cloud.default_boot_s == 30 and ctx.cloud.min_charge_s == 0
    assert ctx.budget_per_hr is None and len(ctx.trace) == data["queries"]
    assert ctx.policy == "fcfs"


def test_simulate_a_trace_without_an_autoscaler_is_the_plain_simulator(capsys, tmp_path):
    trace = tmp_path / "t.csv"
    run(capsys, "trace", "spike", "--out", str(trace), "--duration-s", "300", "--peak-qps", "40")
    code, out, _ = run(capsys, "simulate", "--trace", str(trace), "--policy", "kairos", "--json")
    assert code == 0
    data = json.loads(out)
    scenario = Scenario.build("rm2")
    pool = Pool.parse(simulate_cli.REFERENCE_POOL)
    plain = simulate(scenario, pool, "kairos", load_trace(trace)).records
    warmup = int(len(plain.arrival_s) * 0.1)
    m = plain.metrics(scenario.qos_ms, warmup)
    assert data["p99_ms"] == m.p99_ms and data["qos_met_fraction"] == m.qos_met_fraction
    assert np.isclose(data["throughput_qps"], m.throughput_qps)
