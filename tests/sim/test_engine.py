from __future__ import annotations

import numpy as np
import pytest

from kairos.catalog import Pool, PriceTable
from kairos.distributor.base import Policy
from kairos.errors import PolicyError
from kairos.scenario import Scenario
from kairos.sim.engine import simulate
from kairos.workload import QueryStream, fixed_mix, poisson_stream
from tests.conftest import constant_profiles


def stream(times, batches=None):
    t = np.array(times, dtype=float)
    b = np.array(batches if batches is not None else [10] * len(times))
    return QueryStream(t, b)


def test_single_instance_fifo_by_hand(toy_scenario):
    # 10 ms per query; arrivals at 0, 1, 2 ms queue behind each other.
    res = simulate(toy_scenario, Pool.parse("fast=1"), "fcfs", stream([0.0, 0.001, 0.002]))
    r = res.records
    assert r.start_s == pytest.approx([0.0, 0.010, 0.020])
    assert r.finish_s == pytest.approx([0.010, 0.020, 0.030])
    assert r.latency_ms == pytest.approx([10.0, 19.0, 28.0])
    m = r.metrics(toy_scenario.qos_ms)
    assert m.qos_met_fraction == 1.0
    assert res.cost_per_hr == 1.0


def test_fcfs_lowest_index_first_and_types():
    sc = Scenario.build(
        "toy",
        qos_ms=100,
        profiles=constant_profiles({"slow": 30.0, "fast": 10.0}),
        prices=PriceTable({"slow": 0.1, "fast": 1.0}),
        mix=fixed_mix(10),
    )
    pool = Pool.parse("slow=1,fast=1")
    res = simulate(sc, pool, "fcfs", stream([0.0, 0.0, 0.0]))
    r = res.records
    assert r.instance.tolist() == [0, 1, 1]  # q0 -> slow (index 0), q1 -> fast, q2 waits
    assert r.finish_s == pytest.approx([0.030, 0.010, 0.020])
    util = r.utilisation()
    assert util["slow"] == pytest.approx(1.0) and util["fast"] == pytest.approx(20 / 30)


def test_deterministic_for_a_seed_and_different_across_seeds():
    sc = Scenario.build("rm2")
    pool = Pool.parse("g4dn.xlarge=1,r5n.large=2")
    st = poisson_stream(10.0, 500, sc.mix, np.random.default_rng(0))
    a = simulate(sc, pool, "fcfs", st, seed=5).records
    b = simulate(sc, pool, "fcfs", st, seed=5).records
    c = simulate(sc, pool, "fcfs", st, seed=6).records
    assert np.array_equal(a.finish_s, b.finish_s)
    assert not np.array_equal(a.finish_s, c.finish_s)
    assert np.all(a.start_s >= a.arrival_s) and np.all(a.finish_s > a.start_s)


class Stuck(Policy):
    name = "stuck"

    def decide(self, state):
        return []


class Rogue(Policy):
    name = "rogue"

    def decide(self, state):
        return [(q.qid, 0) for q in state.head(2)]  # starts two queries on one instance


def test_a_policy_that_never_starts_queries_is_reported(toy_scenario):
    with pytest.raises(PolicyError, match="left 1 queries queued"):
        simulate(toy_scenario, Pool.parse("fast=1"), Stuck, stream([0.0]))


def test_invalid_decisions_are_rejected(toy_scenario):
    with pytest.raises(PolicyError, match="not idle"):
        simulate(toy_scenario, Pool.parse("fast=1"), Rogue, stream([0.0, 0.0]))


def test_unknown_policy(toy_scenario):
    with pytest.raises(PolicyError, match="known: .*fcfs"):
        simulate(toy_scenario, Pool.parse("fast=1"), "nope", stream([0.0]))
