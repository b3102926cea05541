"""The bounds must never be below what the simulator achieves (checked on a sample).

Both bounds limit the rate by capacity and by the QoS threshold alone, which no distribution
policy can beat; fcfs keeps these tests independent of the kairos policy's development.
"""

import pytest

from kairos.allocator import fluid_bound, kairos_bound
from kairos.catalog import Pool
from kairos.scenario import Scenario
from kairos.sim.capacity import allowable_throughput

SAMPLE = [
    ("rm2", "g4dn.xlarge=1,r5n.large=13"),
    ("wnd", "g4dn.xlarge=4"),
    ("wnd", "g4dn.xlarge=2,c5n.2xlarge=2"),
    ("mtwnd", "g4dn.xlarge=2,r5n.large=9"),
    ("dien", "g4dn.xlarge=1,t3.xlarge=5,r5n.large=3"),
    ("ncf", "g4dn.xlarge=3,r5n.large=2"),
    ("ncf", "c5n.2xlarge=5"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("model", "pool_text"), SAMPLE)
def test_bounds_are_not_below_simulated_allowable_throughput(model, pool_text):
    scenario = Scenario.build(model)
    pool = Pool.parse(pool_text)
    sim = allowable_throughput(scenario, pool, "fcfs", queries=1000, precision=0.05)
    assert sim.allowable_qps <= kairos_bound(scenario, pool)
    assert sim.allowable_qps <= fluid_bound(scenario, pool)
