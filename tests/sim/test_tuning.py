"""DRS threshold tuning by hill climbing on the simulator (kairos/sim/tuning.py)."""

from __future__ import annotations

import pytest

from kairos.catalog import Pool
from kairos.distributor.policies.drs import default_drs_threshold
from kairos.errors import ConfigError
from kairos.scenario import Scenario
from kairos.sim.capacity import Measurement, measure
from kairos.sim.tuning import tune_drs, tune_drs_threshold

SMALL = Measurement(queries=400, precision=0.03)


@pytest.mark.slow
def test_drs_tuning_is_no_worse_than_the_default():
    scenario = Scenario.build("rm2")
    pool = Pool.parse("g4dn.xlarge=1,r5n.large=4")
    res = tune_drs(scenario, pool, measurement=SMALL, steps=(160, 80))
    default = default_drs_threshold(scenario.profiles, pool.instance_types(), 350.0)

    def qps(t: int) -> float:
        return measure(scenario, pool, "drs", SMALL, policy_options={"threshold": t}).allowable_qps

    assert res.start == default
    assert qps(res.threshold) >= qps(default)
    assert res.threshold % 10 == 0 and 0 <= res.threshold <= 1000
    assert res.evaluations[res.threshold] == res.allowable_qps == qps(res.threshold)


def test_tuning_rejects_bad_steps():
    pool = Pool.parse("g4dn.xlarge=1,r5n.large=1")
    with pytest.raises(ConfigError, match="steps"):
        tune_drs(Scenario.build("rm2"), pool, steps=(15,))
    with pytest.raises(ConfigError, match="steps"):
        tune_drs_threshold(Scenario.build("rm2"), pool, steps=(0,))
