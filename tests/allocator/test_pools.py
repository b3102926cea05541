import itertools

import pytest

from kairos.allocator import enumerate_pools, plan, pool_matrix
from kairos.catalog import PriceTable
from kairos.errors import ConfigError, InfeasibleError, UnknownInstanceTypeError
from kairos.scenario import Scenario

from .conftest import PAPER_CAPS


def brute_force(scenario, budget, caps):
    types = scenario.instance_types
    prices = [scenario.prices.price_per_hr(t) for t in types]
    out = set()
    for combo in itertools.product(*[range(caps[t] + 1) for t in types]):
        cost = sum(n * p for n, p in zip(combo, prices, strict=True))
        if sum(combo) and cost <= budget + 1e-9:
            out.add(tuple(combo))
    return out


@pytest.mark.parametrize("budget", [0.15, 0.6, 1.3, 2.5])
def test_enumeration_matches_brute_force(budget):
    scenario = Scenario.build("wnd")
    pm = pool_matrix(scenario, budget, PAPER_CAPS)
    got = {tuple(int(x) for x in row) for row in pm.counts}
    assert got == brute_force(scenario, budget, PAPER_CAPS)
    assert len(got) == len(pm)
    assert (pm.cost_per_hr <= budget + 1e-9).all()


def test_enumerate_pools_returns_pools_with_costs_within_budget():
    scenario = Scenario.build("rm2")
    pools = enumerate_pools(scenario, 1.0)
    assert pools and all(p.cost_per_hr(scenario.prices) <= 1.0 + 1e-9 for p in pools)
    assert all(p.size > 0 for p in pools)


def test_budget_equal_to_a_pools_cost_includes_it():
    scenario = Scenario.build("mtwnd")
    result = plan(scenario, 0.526, verify_top=0)
    assert str(result.pool) == "g4dn.xlarge=1"


def test_budget_just_too_small_names_the_cheapest_pool():
    scenario = Scenario.build("mtwnd")
    with pytest.raises(InfeasibleError, match=r"g4dn.xlarge=1 at \$0.526/h"):
        plan(scenario, 0.5)
    with pytest.raises(InfeasibleError, match="cheapest pool"):
        plan(scenario, 0.5, bound="fluid")


def test_caps_restrict_the_pools():
    scenario = Scenario.build("mtwnd")
    result = plan(scenario, 2.5, caps={"g4dn.xlarge": 1}, verify_top=0)
    assert result.pool.count("g4dn.xlarge") <= 1
    assert result.pool != plan(scenario, 2.5, verify_top=0).pool


def test_qos_no_type_can_meet_is_reported():
    scenario = Scenario.build("rm2", qos_ms=5.0)
    with pytest.raises(InfeasibleError, match="at any budget"):
        plan(scenario, 10.0)


@pytest.mark.parametrize("budget", [-1.0, 0.0, float("nan"), float("inf")])
def test_bad_budget(budget):
    with pytest.raises(ConfigError, match="budget"):
        plan(Scenario.build("rm2"), budget)


def test_unknown_type_in_caps():
    with pytest.raises(UnknownInstanceTypeError, match="p9.huge"):
        plan(Scenario.build("rm2"), 2.5, caps={"p9.huge": 2})


def test_negative_cap():
    with pytest.raises(ConfigError, match="-1"):
        plan(Scenario.build("rm2"), 2.5, caps={"r5n.large": -1})


def test_empty_catalog():
    scenario = Scenario.build("rm2", prices=PriceTable({"x1.huge": 1.0}))
    with pytest.raises(UnknownInstanceTypeError, match="no instance type has both"):
        plan(scenario, 2.5)


def test_bad_bound_name():
    with pytest.raises(ConfigError, match="exact"):
        plan(Scenario.build("rm2"), 2.5, bound="exact")
