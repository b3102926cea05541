"""Ranking catalogs too large to list: the KAIROS-bound search and the fluid MILP's K best,
checked against full enumeration where enumeration is possible."""

from __future__ import annotations

import numpy as np
import pytest

from kairos.allocator import (
    fluid_bounds,
    kairos_bounds,
    milp_top,
    plan,
    pool_matrix,
    rank,
)
from kairos.allocator.kairos_search import kairos_top
from kairos.allocator.pools import count_pools, listed_pools
from kairos.allocator.ranking import FluidOrder
from kairos.scenario import Scenario
from tests.allocator.synthetic import variant_scenario


@pytest.mark.parametrize(
    ("model", "n_types", "seed", "budget"),
    [("rm2", 4, 0, 2.5), ("dien", 8, 0, 2.5), ("rm2", 8, 3, 2.0), ("ncf", 10, 5, 1.5)],
)
def test_kairos_search_returns_the_enumerations_top_pools(model, n_types, seed, budget):
    scenario = variant_scenario(model, n_types, seed=seed)
    pm = pool_matrix(scenario, budget)
    expected = rank(pm, kairos_bounds(scenario, pm.types, pm.counts), 10)
    got = kairos_top(scenario, budget, 10)
    assert [r.upper_bound_qps for r in got] == pytest.approx(
        [r.upper_bound_qps for r in expected], rel=1e-9
    )
    assert [str(r.pool) for r in got] == [str(r.pool) for r in expected]


def test_fluid_order_is_the_enumerations_order_with_few_lps():
    scenario = variant_scenario("dien", 6, seed=0)
    pm = pool_matrix(scenario, 1.6)
    exact = fluid_bounds(scenario, pm.types, pm.counts)
    order = FluidOrder(scenario, pm)
    got = [r.upper_bound_qps for _, r in zip(range(15), order, strict=False)]
    assert got == pytest.approx(np.sort(exact)[::-1][:15], rel=1e-9)
    assert order.lps < len(pm) / 4  # the cheap dual bounds spared most of the LPs


def test_milp_k_best_matches_enumeration_on_a_small_catalog():
    scenario = variant_scenario("wnd", 5, seed=2)
    pm = pool_matrix(scenario, 1.0)
    exact = np.sort(fluid_bounds(scenario, pm.types, pm.counts))[::-1]
    got = milp_top(scenario, 1.0, 4)
    assert len({r.pool for r in got}) == 4
    assert [r.upper_bound_qps for r in got] == pytest.approx(exact[:4], rel=1e-6)


def test_large_catalogs_rank_by_search_not_by_listing():
    scenario = variant_scenario("dien", 16, seed=1)
    assert listed_pools(scenario, 2.5) is None and count_pools(scenario, 2.5) > 1e6
    result = plan(scenario, 2.5, top=5, verify_top=0)
    assert result.ranking == "search" and result.pools_considered == 0
    bounds = [r.upper_bound_qps for r in result.ranked]
    assert len(bounds) == 5 and bounds == sorted(bounds, reverse=True) and bounds[-1] > 0
    assert all(r.cost_per_hr <= 2.5 + 1e-9 for r in result.ranked)
    counts = np.array([[r.pool.count(t) for t in scenario.instance_types] for r in result.ranked])
    assert kairos_bounds(scenario, scenario.instance_types, counts) == pytest.approx(bounds)


def test_count_pools_agrees_with_the_listing():
    scenario = Scenario.build("rm2")
    for budget in (0.6, 1.3, 2.5):
        assert count_pools(scenario, budget) == len(pool_matrix(scenario, budget))
