"""Re-planning from live traffic: the router's observed mix follows a shift in the load, and
``kairos advise`` then proposes another pool with a predicted gain (real router, loopback)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from kairos.aio import run_event_loop
from kairos.cli.main import cli
from kairos.client.admin import fetch_traffic
from kairos.client.launch import running_router
from kairos.client.loadgen import LoadSpec, run_load
from kairos.control.advise import advise, observed_scenario
from kairos.workload import fixed_mix

POOL = "g4dn.xlarge=1,r5n.large=3"
# Simulated trials of 500 queries instead of advise's 2,000: the pools compared here differ
# by far more than a short trial's noise, and the test then costs a quarter of the CPU.
QUERIES = "500"


def drive(url: str, batch: int, rate_qps: float) -> None:
    spec = LoadSpec(url, "dien", rate_qps, 2.5, fixed_mix(batch), seed=batch)
    report = run_event_loop(run_load(spec))
    assert report.completed == report.sent > 0


def advice(url: str) -> dict:
    result = CliRunner().invoke(
        cli, ["advise", "--url", url, "--budget-per-hr", "2.5", "--json", "--queries", QUERIES]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.slow
def test_observed_mix_follows_the_load_and_the_advice_follows_the_mix() -> None:
    args = ["--model", "dien", "--pool", POOL, "--traffic-window-s", "2"]
    with running_router(args, ready_timeout_s=60) as router:
        drive(router.url, 40, 150.0)
        small = fetch_traffic(router.url)
        assert small["mix"]["batch_size"] == [40]
        assert small["pool"] == POOL and small["bound_qps"] > 0
        first = advice(router.url)
        drive(router.url, 700, 12.0)  # the same clients now send large batches
        large = fetch_traffic(router.url)
        assert large["mix"]["batch_size"] == [700]  # the small ones left the 2 s window
        assert large["bound_qps"] < small["bound_qps"]
        second = advice(router.url)
    assert first["proposed_pool"] != second["proposed_pool"]
    # Against a target, on the same two views: small batches leave the pool over-provisioned
    # for 20 q/s, large ones leave it short of it.
    roomy, tight = (
        advise(v, observed_scenario(v), router.url, target_qps=20.0, queries=int(QUERIES))
        for v in (small, large)
    )
    assert roomy.provisioning == "over" and roomy.cost_change_per_hr < 0
    assert tight.provisioning == "under" and tight.running_allowable_qps < 20
    assert tight.proposed_allowable_qps >= 20 and tight.cost_change_per_hr > 0
    assert second["changed"] and second["gain"] > 1.0
    assert second["scale_command"].endswith(f"--pool {second['proposed_pool']}")
