"""``kairos serve --autoscale`` on loopback: a step trace sent by ``kairos loadgen --trace`` at
a compressed time scale makes the pool grow, the idle time after it makes it shrink, every
move is logged, and no query is lost."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kairos.catalog import Pool
from kairos.client.launch import running_router
from kairos.protocol.api import ADMIN_POOL_PATH
from kairos.scenario import Scenario
from kairos.traces import TraceSettings, synthetic_trace, write_trace

START = "r5n.large=1"
TIME_SCALE = "0.02"  # 50 profile seconds a wall second: the kairos delays (300 s) fit
WAIT_DOWN_S = 40.0  # wall seconds the test waits for the move down, at most


def step_trace(path: Path) -> Path:
    """4 q/s for a minute, then 14 q/s for a minute (rm2: one r5n.large holds the first)."""
    scenario = Scenario.build("rm2")
    settings = TraceSettings(duration_s=120.0, trough_qps=4.0, peak_qps=14.0, at_s=60.0)
    return write_trace(synthetic_trace("step", settings, scenario.mix, seed=3), path)


def pool_cost(text: str) -> float:
    return Pool.parse(text).cost_per_hr(Scenario.build("rm2").prices)


def test_serve_autoscale_grows_then_shrinks_and_loses_nothing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    trace = step_trace(tmp_path / "step.csv")
    args = ["--model", "rm2", "--pool", START, "--autoscale", "kairos"]
    args += ["--time-scale", TIME_SCALE, "--boot-s", "60", "--max-queue", "100000"]
    with running_router(args) as router:
        sent = subprocess.run(
            [sys.executable, "-m", "kairos", "loadgen", "--url", router.url, "--model", "rm2"]
            + ["--trace", str(trace), "--json"],
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert sent.returncode in (0, 1), sent.stderr  # 1: ran, and missed QoS somewhere
        report = json.loads(sent.stdout)
        # The pool the autoscaler rents, until it has come down from its largest.
        peak = current = pool_cost(START)
        deadline = time.monotonic() + WAIT_DOWN_S
        while time.monotonic() < deadline:
            status, body = router.get(ADMIN_POOL_PATH)
            assert status == 200, body
            current = pool_cost(json.loads(body)["pool"])
            peak = max(peak, current)
            if current < peak:
                break
            time.sleep(0.2)
    # No query lost: every one of the trace was answered with a result.
    assert report["sent"] == report["completed"] > 0, report
    assert (report["errors"], report["rejected"], report["no_answer"]) == (0, 0, 0), report
    assert peak > pool_cost(START), "the pool never grew"
    assert current < peak, "the pool never shrank after the trace"
    # Every move is one log line: time, from pool, to pool, why.
    moves = re.findall(
        r"autoscale t=([\d.]+)s: (\S+) -> (\S+) \((.+)\)$", capfd.readouterr().err, re.M
    )
    assert len(moves) >= 2, moves
    costs = [(pool_cost(a), pool_cost(b)) for _, a, b, _ in moves]
    assert costs[0][1] > costs[0][0]  # the first move is up
    assert any(b < a for a, b in costs[1:])  # and one later move is down
    assert all(float(t) > 0 and "target" in why for t, _, _, why in moves)
