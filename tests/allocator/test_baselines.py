import numpy as np
import pytest

from kairos.allocator import best_homogeneous, best_of_top, ribbon_search
from kairos.allocator.baselines import bayes_search
from kairos.allocator.pools import PoolMatrix
from kairos.catalog import Pool
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


def test_best_of_top_screened_picks_the_same_pool():
    # Screening the pools after the first against the best of it (one trial) must pick the
    # pool the full searches pick; screened-out pools are explorations with 0 q/s.
    scenario = Scenario.build("mtwnd")
    full = best_of_top(scenario, 2.5, policy="fcfs", top_k=6, measurement=SIM)
    res = best_of_top(scenario, 2.5, policy="fcfs", top_k=6, measurement=SIM, screen=1)
    assert (res.pool, res.allowable_qps, res.explorations) == (
        full.pool,
        full.allowable_qps,
        full.explorations,
    )
    by_pool = {e.pool: e.allowable_qps for e in full.history}
    assert res.history[0].searched
    for e in res.history:
        assert e.allowable_qps == (by_pool[e.pool] if e.searched else 0.0)
    assert not all(e.searched for e in res.history)  # the screen cut something


@pytest.mark.slow
def test_ribbon_explores_pools_within_budget_and_stops():
    scenario = Scenario.build("wnd")
    res = ribbon_search(scenario, 1.5, max_explorations=6, patience=3, measurement=SIM)
    assert 1 <= res.explorations <= 6
    assert len({e.pool for e in res.history}) == res.explorations
    assert all(e.cost_per_hr <= 1.5 + 1e-9 for e in res.history)
    assert res.allowable_qps == max(e.allowable_qps for e in res.history)
    assert res.exploration_cost_per_hr == pytest.approx(sum(e.cost_per_hr for e in res.history))


def _space(n_types: int, cap: int) -> PoolMatrix:
    grids = np.meshgrid(*[np.arange(cap + 1)] * n_types, indexing="ij")
    counts = np.stack([g.ravel() for g in grids], axis=1)[1:]  # no empty pool
    prices = np.ones(n_types)
    return PoolMatrix(tuple(f"T{i}" for i in range(n_types)), prices, counts, counts @ prices)


def test_bayes_search_scores_whole_rounds_of_new_pools_and_replays_exactly():
    space = _space(3, 6)
    target = np.array([4.0, 1.0, 5.0])

    def run(seed: int, batch: int) -> list[list[str]]:
        rounds: list[list[str]] = []

        def score(pools):
            rounds.append([str(p) for p in pools])
            return [-float(np.sum((pool_counts(p) - target) ** 2)) for p in pools]

        bayes_search(space, seed, 12, 12, score, batch=batch)
        return rounds

    def pool_counts(p):
        return np.array([p.count(t) for t in space.types], dtype=float)

    first = run(0, 2)
    assert first == run(0, 2)  # same seed, same suggestions
    seen = [p for r in first for p in r]
    assert len(seen) == 12 == len(set(seen))  # every suggestion is a new pool, budget spent
    assert [len(r) for r in first] == [2] * 6
    # the surrogate closes in on the optimum: the best of the later rounds beats the first
    best = max(-float(np.sum((pool_counts(Pool.parse(p)) - target) ** 2)) for p in seen[2:])
    opening = max(-float(np.sum((pool_counts(Pool.parse(p)) - target) ** 2)) for p in seen[:2])
    assert best > opening
    # patience: a flat score stops after `patience` explorations without improvement
    calls: list[int] = []

    def flat(pools):
        calls.append(len(pools))
        return [0.0] * len(pools)

    bayes_search(space, 0, 40, 3, flat)
    assert sum(calls) == 4  # the first sets the best, three more without improvement (2 + 2)
