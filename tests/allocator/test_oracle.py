"""The exact oracle: branch and bound over every pool within budget."""

from __future__ import annotations

import pytest

from kairos.allocator import exact_oracle, pool_matrix
from kairos.sim.capacity import Measurement, measure

from .conftest import toy_scenario

SIM = Measurement(queries=300, precision=0.05, seed=1)


@pytest.fixture
def catalog():
    # G: fast on everything; K: cheap, small queries only; F: a slower all-rounder.
    return toy_scenario(
        {"G": (10.0, 20.0), "K": (20.0, 200.0), "F": (15.0, 40.0)},
        {"G": 1.0, "K": 0.25, "F": 0.8},
    )


def test_oracle_finds_the_best_of_all_pools_and_stops_early(catalog):
    budget = 2.5
    pools = pool_matrix(catalog, budget).pools()
    every = {str(p): measure(catalog, p, "kairos", SIM).allowable_qps for p in pools}
    res = exact_oracle(catalog, budget, measurement=SIM)
    best = max(every.values())
    assert res.exact and res.pools_within_budget == len(pools)
    assert res.allowable_qps == pytest.approx(best, rel=SIM.precision)
    assert every[str(res.pool)] == res.allowable_qps
    assert res.explorations < len(pools)  # the bound cut the rest
    # Every pool it did not simulate has a fluid bound below the best it found.
    simulated = {str(e.pool) for e in res.history}
    assert all(e.upper_bound_qps >= res.allowable_qps or not e.searched for e in res.history)
    assert res.searched is not None and res.searched <= res.explorations
    assert len(simulated) == res.explorations


def test_oracle_lookahead_changes_the_work_never_the_answer(catalog):
    # Screens of later waves run early on the chance that the floor stays; the pools
    # explored, their order, their figures and the answer are those of one wave at a time.
    from kairos.sim.capacity import Measurer

    def run(lookahead: int):
        measurer = Measurer()
        res = exact_oracle(catalog, 2.5, measurement=SIM, lookahead=lookahead, wave=2)
        again = exact_oracle(
            catalog, 2.5, measurement=SIM, lookahead=lookahead, wave=2, measurer=measurer
        )
        assert again.history == res.history
        return res, measurer.searches

    one, searches_one = run(1)
    three, searches_three = run(3)
    assert three.history == one.history and three.pool == one.pool and three.exact
    assert three.allowable_qps == one.allowable_qps
    assert searches_three >= searches_one  # speculative screens are extra work only


def test_oracle_seeds_change_the_work_never_the_answer(catalog):
    # Seeds (pools already searched in full, as kairos compare passes them) are searched
    # first and give the floor at once; the walk skips them and screens its first wave.
    from kairos.catalog import Pool
    from kairos.sim.capacity import Measurer

    plain = exact_oracle(catalog, 2.5, measurement=SIM)
    worst = min((e for e in plain.history if e.searched), key=lambda e: e.allowable_qps)
    over = Pool.of({"G": 3})  # $3/h: above the budget, left out
    measurer = Measurer()
    seeds = [plain.pool, worst.pool, plain.pool, over]
    seeded = exact_oracle(catalog, 2.5, measurement=SIM, seeds=seeds, measurer=measurer)
    assert seeded.pool == plain.pool and seeded.allowable_qps == plain.allowable_qps
    assert seeded.exact
    assert [e.pool for e in seeded.history[:2]] == [plain.pool, worst.pool]
    assert seeded.history[0].searched and seeded.history[0].cost_per_hr == plain.cost_per_hr
    pools = [str(e.pool) for e in seeded.history]
    assert len(pools) == len(set(pools)) and str(over) not in pools
    # From the first wave on, every pool not seeded was screened against the best seed.
    assert seeded.searched is not None and plain.searched is not None
    assert seeded.searched < plain.searched + 2
    assert all(e.upper_bound_qps >= seeded.allowable_qps for e in seeded.history[2:])


def test_oracle_bad_settings(catalog):
    from kairos.errors import ConfigError, PolicyError

    with pytest.raises(ConfigError, match="wave"):
        exact_oracle(catalog, 2.5, measurement=SIM, wave=0)
    with pytest.raises(ConfigError, match="lookahead"):
        exact_oracle(catalog, 2.5, measurement=SIM, lookahead=0)
    with pytest.raises(PolicyError, match="bogus"):
        exact_oracle(catalog, 2.5, measurement=SIM, policy="bogus")
