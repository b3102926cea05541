"""``advise`` on a synthetic traffic view (no router): against a target rate it proposes the
cheapest pool that holds the rate on the observed mix and says whether the running pool is
over- or under-provisioned for it."""

from __future__ import annotations

import pytest

from kairos.catalog import Pool
from kairos.cli.advise import verdict
from kairos.cli.main import main
from kairos.control.advise import advise, observed_scenario
from kairos.errors import ConfigError
from kairos.scenario import Scenario
from kairos.sim.capacity import CapacityJob, Measurement, run_job

URL = "http://127.0.0.1:8000"
QUERIES = 500
RATE = 40.0


def view(pool: str) -> dict:
    mix = Scenario.build("rm2").mix
    return {
        "model": "rm2",
        "qos_ms": Scenario.build("rm2").qos_ms,
        "policy": "kairos",
        "pool": pool,
        "rate_qps": 35.0,
        "window_s": 60.0,
        "mix": {"batch_size": mix.support.tolist(), "weight": mix.probs.tolist()},
    }


def holds(scenario: Scenario, pool: Pool, rate: float) -> bool:
    job = CapacityJob(scenario, pool, "kairos", Measurement(queries=QUERIES), screen_qps=rate)
    return run_job(job).allowable_qps >= rate


def test_a_large_pool_is_over_provisioned_and_a_small_one_under() -> None:
    big = view("g4dn.xlarge=4,r5n.large=8")
    scenario = observed_scenario(big)
    over = advise(big, scenario, URL, target_qps=RATE, queries=QUERIES)
    assert over.provisioning == "over" and over.running_holds_target
    assert over.cost_change_per_hr < 0 and over.proposed_cost_per_hr < over.running_cost_per_hr
    assert holds(scenario, over.proposed_pool, RATE)
    assert over.proposed_allowable_qps >= RATE and over.running_allowable_qps > RATE
    assert over.scale_command == f"kairos scale --url {URL} --pool {over.proposed_pool}"
    doc = over.as_dict()
    assert doc["provisioning"] == "over" and doc["target_qps"] == RATE
    assert "budget_per_hr" not in doc
    line = verdict(over)
    assert line.startswith("over-provisioned for 40 q/s") and over.scale_command in line

    small = view("r5n.large=3")
    under = advise(small, scenario, URL, target_qps=RATE, queries=QUERIES)
    assert under.provisioning == "under" and not under.running_holds_target
    assert not holds(scenario, under.running_pool, RATE)
    assert under.running_allowable_qps < RATE <= under.proposed_allowable_qps
    assert under.cost_change_per_hr > 0 and under.gain > 1
    # The same observed mix and target: the same cheapest pool, whatever is running.
    assert under.proposed_pool == over.proposed_pool
    assert verdict(under).startswith("under-provisioned: the running pool misses 40 q/s")

    fitted = view(str(over.proposed_pool))
    right = advise(fitted, scenario, URL, target_qps=RATE, queries=QUERIES)
    assert right.provisioning == "right" and not right.changed
    assert right.cost_change_per_hr == 0
    assert "kairos scale" not in verdict(right)


def test_advice_needs_exactly_one_of_budget_and_target() -> None:
    v = view("r5n.large=3")
    scenario = observed_scenario(v)
    for kwargs in ({}, {"budget_per_hr": 2.5, "target_qps": RATE}):
        with pytest.raises(ConfigError, match="exactly one of --budget-per-hr and --target-qps"):
            advise(v, scenario, URL, **kwargs)  # type: ignore[arg-type]


def test_cli_refuses_neither_or_both_before_reading_the_router(capsys) -> None:
    for extra in ([], ["--budget-per-hr", "2.5", "--target-qps", "40"]):
        with pytest.raises(SystemExit) as exit_:
            main(["advise", "--url", "http://127.0.0.1:9", *extra])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "exactly one of --budget-per-hr and --target-qps" in err and "To fix:" in err
