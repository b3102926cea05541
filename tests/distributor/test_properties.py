"""Property tests for every registered policy over random queues, pools and failures."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kairos.distributor import policy_names
from tests.distributor.driver import CPU, GPU, SLOW, replay

POLICIES = policy_names()


@st.composite
def scenarios(draw):
    types = tuple(draw(st.lists(st.sampled_from([GPU, CPU, SLOW]), min_size=1, max_size=7)))
    n = draw(st.integers(1, 40))
    batches = draw(st.lists(st.sampled_from([10, 60, 150, 300, 700, 1000]), min_size=n, max_size=n))
    gaps = draw(st.lists(st.floats(0.0, 80.0), min_size=n, max_size=n))
    scale = draw(st.lists(st.floats(0.5, 2.0), min_size=1, max_size=5))
    downs = draw(
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, len(types) - 1)), max_size=3)
    )
    return types, batches, gaps, scale, downs


def check(trace, n: int) -> None:
    assert trace.finished == set(range(n)), "a query was lost"
    for qid, count in trace.starts.items():
        assert count == 1 + trace.requeues.get(qid, 0), f"query {qid} started {count} times"


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=80, deadline=None)
@given(case=scenarios())
def test_no_query_lost_or_started_twice(case, policy):
    types, batches, gaps, scale, downs = case
    # The state itself rejects a decision on a busy/down instance or an unqueued query.
    trace = replay(policy, types, batches, gaps, scale, downs)
    check(trace, len(batches))


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=20, deadline=None)
@given(case=scenarios(), seed=st.integers(0, 2**16))
def test_decisions_are_deterministic_for_a_seed(case, seed, policy):
    types, batches, gaps, scale, downs = case
    first = replay(policy, types, batches, gaps, scale, downs, seed=seed)
    second = replay(policy, types, batches, gaps, scale, downs, seed=seed)
    assert first.decisions == second.decisions


@settings(max_examples=30, deadline=None)
@given(scenarios())
def test_kairos_plain_mode_also_serves_everything(case):
    types, batches, gaps, scale, downs = case
    trace = replay("kairos", types, batches, gaps, scale, downs, options={"plain": True})
    check(trace, len(batches))
