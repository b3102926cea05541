import pytest

from kairos.allocator import best_homogeneous, best_of_top, ribbon_search
from kairos.scenario import Scenario
from kairos.sim.capacity import Measurement

SIM = Measurement(queries=300, precision=0.1, seed=0)


def test_best_homogeneous_tries_one_pool_per_type():
    scenario = Scenario.build("wnd")
    res = best_homogeneous(scenario, 2.5, measurement=SIM)
    assert res.explorations == 4 and len(res.pool.types) == 1
    assert res.allowable_qps == max(e.allowable_qps for e in res.history)
    assert all(e.cost_per_hr <= 2.5 for e in res.history)
    # each type at the largest count the budget allows
    assert {str(e.pool) for e in res.history} >= {"g4dn.xlarge=4", "r5n.large=16"}


def test_best_of_top_simulates_top_k_by_bound():
    scenario = Scenario.build("mtwnd")
    res = best_of_top(scenario, 2.5, policy="fcfs", top_k=3, measurement=SIM)
    assert res.explorations == 3
    assert res.allowable_qps == max(e.allowable_qps for e in res.history)
    assert "g4dn.xlarge=2,r5n.large=9" in {str(e.pool) for e in res.history}


@pytest.mark.slow
def test_ribbon_explores_pools_within_budget_and_stops():
    scenario = Scenario.build("wnd")
    res = ribbon_search(scenario, 1.5, max_explorations=6, patience=3, measurement=SIM)
    assert 1 <= res.explorations <= 6
    assert len({e.pool for e in res.history}) == res.explorations
    assert all(e.cost_per_hr <= 1.5 + 1e-9 for e in res.history)
    assert res.allowable_qps == max(e.allowable_qps for e in res.history)
    assert res.exploration_cost_per_hr == pytest.approx(sum(e.cost_per_hr for e in res.history))
