import numpy as np
import pytest

from kairos.allocator import fluid_bound, fluid_bounds, pool_matrix, solve_milp
from kairos.catalog import Pool
from kairos.errors import InfeasibleError
from kairos.scenario import Scenario
from tests.allocator.synthetic import synthetic_scenario


def test_fluid_bound_by_hand(toy):
    # Base-only: lam (0.5 * 10 ms + 0.5 * 20 ms) <= 3 instances.
    assert fluid_bound(toy, Pool.of({"G": 3})) == pytest.approx(200.0, rel=1e-6)
    # K takes all small queries (50 qps per instance), G all large ones (50 qps).
    assert fluid_bound(toy, Pool.of({"G": 1, "K": 1})) == pytest.approx(100.0, rel=1e-6)
    # K alone misses QoS on half the queries: nothing is allowable.
    assert fluid_bound(toy, Pool.of({"K": 5})) == 0.0


def test_fluid_bound_grows_with_instances():
    scenario = Scenario.build("dien")
    small = fluid_bound(scenario, Pool.parse("g4dn.xlarge=1,r5n.large=4"))
    large = fluid_bound(scenario, Pool.parse("g4dn.xlarge=1,r5n.large=5"))
    assert 0 < small < large


def test_miss_allowance_lets_one_percent_go_late():
    # A type that misses QoS on 1% of the mix's queries is still usable alone.
    from .conftest import toy_scenario

    scenario = toy_scenario({"A": (10.0, 60.0)}, {"A": 1.0})
    assert fluid_bound(scenario, Pool.of({"A": 1})) == 0.0
    skewed = Scenario(
        scenario.model,
        50.0,
        scenario.profiles,
        scenario.prices,
        type(scenario.mix)("skew", np.array([10, 100]), np.array([0.995, 0.005])),
    )
    assert fluid_bound(skewed, Pool.of({"A": 1})) > 0.0


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_milp_matches_brute_force_on_small_random_catalogs(seed):
    rng = np.random.default_rng(seed)
    scenario = synthetic_scenario(["rm2", "wnd", "dien"][seed % 3], 3, seed=seed)
    budget = float(rng.uniform(0.6, 1.2))
    pm = pool_matrix(scenario, budget)
    brute = fluid_bounds(scenario, pm.types, pm.counts)
    if brute.max() <= 0:
        with pytest.raises(InfeasibleError):
            solve_milp(scenario, budget)
        return
    result = solve_milp(scenario, budget)
    assert result.upper_bound_qps == pytest.approx(brute.max(), rel=1e-5)
    assert result.cost_per_hr <= budget + 1e-9
    # Among pools tied at the optimum the MILP picks the cheapest.
    tied = brute >= brute.max() * (1 - 1e-6)
    assert result.cost_per_hr == pytest.approx(pm.cost_per_hr[tied].min(), abs=1e-9)


def test_milp_handles_a_sixteen_type_catalog():
    scenario = synthetic_scenario("rm2", 16, seed=0)
    assert len(scenario.instance_types) == 16
    result = solve_milp(scenario, 5.0)
    assert result.cost_per_hr <= 5.0 + 1e-9
    assert result.upper_bound_qps == pytest.approx(fluid_bound(scenario, result.pool))
    assert result.upper_bound_qps > 0


def test_milp_agrees_with_fluid_ranking_on_the_paper_setting():
    scenario = Scenario.build("mtwnd")
    assert str(solve_milp(scenario, 2.5).pool) == "g4dn.xlarge=2,r5n.large=9"


def test_synthetic_catalog_is_deterministic_and_larger_than_the_price_list():
    a = synthetic_scenario("wnd", 20, seed=7)
    b = synthetic_scenario("wnd", 20, seed=7)
    assert a.instance_types == b.instance_types and len(a.instance_types) == 20
    assert dict(a.prices.prices_per_hr) == dict(b.prices.prices_per_hr)


def test_large_catalog_ranks_k_pools_by_milp():
    from kairos.allocator import plan

    scenario = synthetic_scenario("wnd", 16, seed=0)
    result = plan(scenario, 5.0, bound="fluid", top=2, verify_top=0)
    assert result.ranking == "milp" and result.pools_considered == 0
    assert len(result.ranked) == 2 and len({r.pool for r in result.ranked}) == 2
    bounds = [r.upper_bound_qps for r in result.ranked]
    assert bounds == sorted(bounds, reverse=True) and bounds[-1] > 0
    assert all(r.cost_per_hr <= 5.0 + 1e-9 for r in result.ranked)
    # The KAIROS bound ranks the same catalog by its own search (tests/allocator/test_search.py).
    assert plan(scenario, 5.0, top=2, verify_top=0).ranking == "search"


def test_maximal_pools_are_exactly_those_that_cannot_grow():
    from kairos.allocator.ranking import maximal_pools

    scenario = Scenario.build("wnd")
    pm = pool_matrix(scenario, 1.2)
    kept = {tuple(r) for r in maximal_pools(scenario, pm, 1.2, None).counts.tolist()}
    everything = {tuple(r) for r in pm.counts.tolist()}
    for row in everything:
        grows = any(
            tuple(n + (i == t) for i, n in enumerate(row)) in everything for t in range(len(row))
        )
        assert (row in kept) == (not grows)
