"""The kairos dense decision path decides exactly as the full solve, on many seeded states.

``fast_paths.decide_dense`` reads service times from a per-instance table, picks penalties
by bisection, skips the penalty when every row is late and examines only the pairs on idle
instances; ``Kairos.decide_matching`` builds the matrix with ``pair_costs`` and walks every
pair. The states below are the ones those shortcuts touch: long queues (rows outnumber
columns, so the urgency bonus applies), windows that are all late, all live or mixed, one
idle instance (overload) or many, instances down, a transport overhead, and pools large
enough for column pruning.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from kairos.distributor.policies.kairos.fast_paths import decide_dense
from kairos.distributor.policies.kairos.policy import Kairos
from kairos.workload import Query
from tests.distributor.driver import CPU, GPU, SLOW, busy_state, context

OPTIONS: list[dict[str, Any]] = [
    {},
    {"slack_quantile": 0.9},
    {"hold_doomed": False},
    {"paper": True},
]
BATCHES = [1, 10, 50, 100, 200, 400, 600, 800, 1000]


def random_state(rng: np.random.Generator, types: tuple[str, ...]):
    n = len(types)
    now = 10.0
    n_idle = int(rng.choice([1, 1, 1, 2, n // 2 or 1]))
    idle = set(rng.choice(n, size=min(n_idle, n), replace=False).tolist())
    # Busy instances: some free soon, some overdue (estimate passed), a few far off.
    rem = {j: float(rng.uniform(-0.05, 0.4)) for j in range(n) if j not in idle}
    n_q = int(rng.integers(1, 3 * n + 3))
    late_s = float(rng.choice([0.0, 0.2, 0.6]))  # how far back the oldest arrival lies
    arrivals = np.sort(now - rng.uniform(0.0, 0.35, n_q) - late_s * rng.random(n_q))
    queue = [Query(i, float(a), int(rng.choice(BATCHES))) for i, a in enumerate(arrivals.tolist())]
    state = busy_state(types, now, rem, queue)
    for j in rng.choice(n, size=int(rng.integers(0, 2)), replace=False).tolist():
        state.mark_down(j)
    for qid in [qid for qid in state.queue if qid < 0]:  # a busy filler put back by mark_down
        del state.queue[qid]
    if rng.random() < 0.25:
        state.set_overhead_s(0.002)
    return state


@pytest.mark.parametrize(
    ("n_gpu", "n_cpu", "n_slow", "cases"),
    [(2, 9, 0, 150), (1, 3, 2, 100), (3, 6, 3, 100), (18, 82, 0, 40)],
)
def test_dense_path_decides_exactly_as_the_full_solve(n_gpu, n_cpu, n_slow, cases):
    types = (GPU,) * n_gpu + (CPU,) * n_cpu + (SLOW,) * n_slow
    rng = np.random.default_rng(n_gpu * 100 + n_cpu * 10 + n_slow)
    policies = [Kairos(context(types), **options) for options in OPTIONS]
    started = 0
    for _ in range(cases):
        state = random_state(rng, types)
        if not state.queue or not state.idle:
            continue
        for pol in policies:
            full = pol.decide_matching(state)
            assert decide_dense(pol.tables, state) == full
            assert pol.decide(state) == full
            started += len(full)
    assert started > cases  # the states made many starts, not only holds
