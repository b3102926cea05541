"""The allowable-throughput measurement against what no pool can beat.

The fluid bound (kairos.allocator.fluid) is valid for every policy: a pool cannot sustain a
rate above it. A finite trial used to pass on a growing queue when QoS is many service times
long (up to 25% above capacity here); trials now last long enough to see any overload larger
than the search's precision. These tests hold the measurement to that.
"""

from __future__ import annotations

import numpy as np
import pytest

from kairos.allocator import fluid_bound
from kairos.catalog import Pool
from kairos.scenario import QOS_QUANTILE, Scenario
from kairos.sim.capacity import Measurement, allowed_misses, measure, run_trial, trial_stream
from kairos.sim.engine import simulate
from kairos.workload import QueryStream
from tests.allocator.synthetic import variant_scenario

PRECISION = 0.05


def random_case(rng: np.random.Generator) -> tuple[Scenario, Pool]:
    """A synthetic catalog (measured types plus variants), a fast or slow model, a short or
    long QoS, and a pool of one or two of its types with a positive fluid bound."""
    model = str(rng.choice(["rm2", "wnd", "mtwnd", "dien", "ncf"]))
    base = Scenario.build(model)
    for _ in range(50):
        scenario = variant_scenario(
            model,
            int(rng.integers(4, 7)),
            seed=int(rng.integers(1 << 30)),
            qos_ms=base.qos_ms * float(rng.choice([1.0, 1.5, 6.0, 20.0])),
            speed_scale=float(rng.choice([0.5, 1.0, 3.0])),
        )
        types = list(scenario.instance_types)
        picked = rng.choice(len(types), size=int(rng.integers(1, 3)), replace=False)
        pool = Pool.of({types[i]: int(rng.integers(1, 5)) for i in picked})
        if fluid_bound(scenario, pool) > 0:
            return scenario, pool
    raise AssertionError("no feasible random case found")


@pytest.mark.parametrize("case", range(16))
def test_simulated_allowable_throughput_never_exceeds_the_fluid_bound(case):
    rng = np.random.default_rng(1000 + case)
    scenario, pool = random_case(rng)
    policy = "kairos" if case % 3 == 0 else "fcfs"
    m = Measurement(queries=300, precision=PRECISION, seed=case)
    bound = fluid_bound(scenario, pool)
    got = measure(scenario, pool, policy, m).allowable_qps
    assert got <= bound * (1 + PRECISION), (str(pool), scenario.qos_ms, policy, got, bound)


def test_the_issues_example_matches_driving_the_pool_far_above_capacity():
    # rm2 at QoS 5 s on 4 x g4dn.xlarge: QoS is ~75 mean service times. The pool's capacity
    # (4 / mean service time) is what it serves when driven at 1,000 q/s, and the allowable
    # throughput can be at most that (within the search's precision).
    scenario = Scenario.build("rm2", qos_ms=5000.0)
    pool = Pool.parse("g4dn.xlarge=4")
    unit, batches = trial_stream(scenario, 20000, 0)
    served = simulate(scenario, pool, "fcfs", QueryStream(unit / 1000.0, batches)).records
    capacity = served.served_qps(2000)
    assert capacity == pytest.approx(fluid_bound(scenario, pool), rel=0.02)
    res = measure(scenario, pool, "fcfs", Measurement(precision=0.02))
    assert 0.9 * capacity < res.allowable_qps <= capacity * 1.02
    # The trial that decided it was long enough: one QoS of backlog builds within it.
    assert max(t.queries for t in res.trials) > 5 * Measurement().queries


def test_trial_stream_offers_exactly_the_nominal_rate_for_every_seed():
    scenario = Scenario.build("rm2")
    for seed in range(5):
        unit, _ = trial_stream(scenario, 3000, seed)
        # n arrivals in [0, n]: the last lands before n, the mean gap is within sampling of 1
        assert unit[0] > 0 and unit[-1] < 3000 and np.all(np.diff(unit) >= 0)
        assert unit[-1] / 3000 == pytest.approx(1.0, abs=0.002)
    # prefix-consistent batches: a longer trial extends a shorter one
    assert np.array_equal(
        trial_stream(scenario, 4000, 3)[1][:3000], trial_stream(scenario, 3000, 3)[1]
    )


def test_a_trial_stops_once_it_has_failed_and_the_verdict_is_unchanged():
    scenario = Scenario.build("dien")
    pool = Pool.parse("g4dn.xlarge=2,r5n.large=9")
    res = measure(scenario, pool, "fcfs", Measurement(queries=500))
    stopped = [t for t in res.trials if t.stopped_early]
    assert stopped and all(not t.passed for t in stopped)
    assert all(
        t.passed == (t.qos_met_fraction >= QOS_QUANTILE) for t in res.trials if not t.stopped_early
    )
    # The early stop fires exactly when one more miss would fail the trial.
    n = 1000
    m = allowed_misses(n)
    assert (n - m) / n >= QOS_QUANTILE > (n - m - 1) / n


@pytest.mark.parametrize("policy", ["fcfs", "kairos"])
def test_stopping_early_never_changes_a_trials_verdict(policy):
    """Each trial's verdict equals that of the same trial simulated to the end."""
    scenario = Scenario.build("dien", qos_ms=60.0)
    pool = Pool.parse("g4dn.xlarge=1,r5n.large=4")
    m = Measurement(queries=400)
    for rate in (150.0, 230.0, 260.0, 300.0, 400.0, 900.0):
        trial, _ = run_trial(scenario, pool, policy, m, rate)
        n = m.trial_queries(scenario.qos_ms, rate)
        warm = m.warmup_for(n)
        unit, batches = trial_stream(scenario, warm + n, m.seed)
        full = simulate(scenario, pool, policy, QueryStream(unit / rate, batches), seed=m.seed)
        met = full.records.metrics(scenario.qos_ms, warm).qos_met_fraction
        assert trial.passed == (met >= QOS_QUANTILE), (rate, met, trial)
        if trial.stopped_early:
            assert trial.qos_met_fraction >= met  # an upper bound on what it would have met
