"""The competing policies (clockwork, least-load, power-of-two, drs)."""

from __future__ import annotations

import numpy as np
import pytest

from kairos.catalog import Pool
from kairos.distributor import make_policy, policy_names
from kairos.distributor.policies.drs import default_drs_threshold
from kairos.errors import ConfigError
from kairos.scenario import QOS_QUANTILE, Scenario
from kairos.sim.engine import simulate
from kairos.workload import Query, poisson_stream
from tests.distributor.driver import CPU, GPU, busy_state, context, model_profiles


def test_every_policy_is_registered():
    assert {"kairos", "fcfs", "drs", "clockwork", "least-load", "power-of-two"} <= set(
        policy_names()
    )


def finish_filler(state, pol, j: int, now_s: float) -> None:
    state.advance(now_s)
    q = state.finish(j)
    pol.on_finish(q, j, state)


def test_clockwork_waits_for_the_busy_gpu_when_it_finishes_first():
    ctx = context((GPU, CPU))
    pol = make_policy("clockwork", ctx)
    state = busy_state((GPU, CPU), 1.0, {0: 0.050}, [])
    q = Query(0, 1.0, 1000)  # GPU: 50 + 261 ms; CPU: 404 ms
    state.enqueue(q)
    pol.on_arrival(q, state)
    assert pol.decide(state) == []
    finish_filler(state, pol, 0, 1.050)
    assert pol.decide(state) == [(0, 0)]


def test_clockwork_counts_reserved_work():
    ctx = context((GPU, CPU))
    pol = make_policy("clockwork", ctx)
    state = busy_state((GPU, CPU), 0.0, {0: 0.010, 1: 0.010}, [])
    first, second = Query(0, 0.0, 1000), Query(1, 0.0, 1000)
    for q in (first, second):
        state.enqueue(q)
        pol.on_arrival(q, state)
    # The second would finish at 10 + 261 + 261 ms on the GPU, later than 414 ms on the CPU.
    finish_filler(state, pol, 0, 0.010)
    finish_filler(state, pol, 1, 0.010)
    assert sorted(pol.decide(state)) == [(0, 0), (1, 1)]


def test_least_load_weights_in_flight_work_by_type_speed():
    ctx = context((GPU, CPU))
    pol = make_policy("least-load", ctx)
    state = busy_state((GPU, CPU), 0.0, {}, [])
    a, b = Query(0, 0.0, 100), Query(1, 0.0, 100)
    state.enqueue(a)
    pol.on_arrival(a, state)
    assert pol.decide(state) == [(0, 0)]  # empty GPU beats empty CPU
    state.start(0, 0, 0.05)
    state.enqueue(b)
    pol.on_arrival(b, state)
    # GPU: (1 + 1) * ~68 ms per query at batch 250 > CPU: 1 * ~104 ms.
    assert pol.decide(state) == [(1, 1)]


def test_least_load_rejects_a_bad_reference_batch():
    with pytest.raises(ConfigError, match="ref_batch"):
        make_policy("least-load", context((GPU, CPU)), ref_batch=0)


def test_power_of_two_picks_the_less_loaded_of_two():
    ctx = context((GPU, CPU))
    pol = make_policy("power-of-two", ctx)
    state = busy_state((GPU, CPU), 0.0, {0: 1.0}, [])
    for i in range(5):
        q = Query(i, 0.0, 10)
        state.enqueue(q)
        pol.on_arrival(q, state)
        for qid, j in pol.decide(state):
            state.start(qid, j, 1.0)
    # With two instances both are always drawn: the idle CPU takes the first query, then the
    # reservations alternate so neither instance gets two more than the other.
    assert state.running[1] is not None and state.running[1].qid == 0
    counts = pol.reserved_count.tolist()  # type: ignore[attr-defined]
    assert abs(counts[0] - counts[1]) <= 1 and sum(counts) == 4


def test_drs_routes_by_size_and_keeps_groups_apart():
    ctx = context((GPU, CPU))
    pol = make_policy("drs", ctx, threshold=300)
    state = busy_state((GPU, CPU), 0.0, {}, [Query(0, 0.0, 500), Query(1, 0.0, 100)])
    assert sorted(pol.decide(state)) == [(0, 0), (1, 1)]
    small_only = busy_state((GPU, CPU), 0.0, {1: 0.1}, [Query(0, 0.0, 100)])
    assert pol.decide(small_only) == []  # a small query never takes the accelerator


def test_drs_default_threshold_is_the_largest_batch_cpus_serve_within_qos():
    profiles = model_profiles("rm2")
    t = default_drs_threshold(profiles, (GPU, CPU), 350.0)
    cpu = profiles.get(CPU)
    assert cpu.quantile_ms(t, QOS_QUANTILE) <= 350.0 < cpu.quantile_ms(t + 10, QOS_QUANTILE)
    assert default_drs_threshold(profiles, (GPU,), 350.0) == profiles.max_batch
    assert default_drs_threshold(profiles, (GPU, CPU), 1.0) == 0


def test_drs_rejects_a_negative_threshold():
    with pytest.raises(ConfigError, match="threshold"):
        make_policy("drs", context((GPU, CPU)), threshold=-5)


@pytest.mark.parametrize("policy", policy_names())
def test_every_policy_runs_in_the_simulator(policy):
    scenario = Scenario.build("rm2")
    pool = Pool.parse("g4dn.xlarge=2,r5n.large=9")
    stream = poisson_stream(60.0, 600, scenario.mix, np.random.default_rng(1))
    rec = simulate(scenario, pool, policy, stream, seed=3).records
    assert np.all(rec.instance >= 0)
    assert np.all(rec.start_s >= rec.arrival_s)
    assert np.all(rec.finish_s > rec.start_s)
