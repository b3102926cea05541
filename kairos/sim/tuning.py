"""Tuning competitors' knobs on the simulator (not charged to them in comparisons).

``tune_drs_threshold`` hill-climbs DRS's size threshold: from a start (the analytic default),
try one step up and one step down, move to whichever raises the allowable throughput, repeat
until neither does, then halve the step. Every trial uses the same seed, so the search
compares thresholds on the same workload. It lives with the simulator it runs (it is used by
the comparison, a benchmark and a test), not with the policies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kairos.catalog import Pool
from kairos.distributor.policies.drs import BATCH_STEP, default_drs_threshold
from kairos.errors import ConfigError
from kairos.scenario import Scenario
from kairos.sim.capacity import DEFAULT_MEASUREMENT, Measurement, measure

DEFAULT_STEPS = (160, 80, 40, 20, 10)


@dataclass(frozen=True)
class TuningResult:
    threshold: int
    allowable_qps: float
    start: int
    start_qps: float
    evaluations: dict[int, float]


def tune_drs(
    scenario: Scenario,
    pool: Pool,
    *,
    measurement: Measurement = DEFAULT_MEASUREMENT,
    steps: Sequence[int] = DEFAULT_STEPS,
    start: int | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> TuningResult:
    """Hill-climb the DRS threshold for ``pool``; the result is never worse than ``start``."""
    if not steps or any(s <= 0 or s % BATCH_STEP for s in steps):
        raise ConfigError(
            f"hill-climbing steps {tuple(steps)!r} are not positive multiples of {BATCH_STEP}.",
            "pass steps such as (160, 80, 40, 20, 10).",
        )
    top = scenario.profiles.max_batch
    if start is None:
        start = default_drs_threshold(scenario.profiles, pool.instance_types(), scenario.qos_ms)
    seen: dict[int, float] = {}

    def score(t: int) -> float:
        if t not in seen:
            res = measure(scenario, pool, "drs", measurement, policy_options={"threshold": t})
            seen[t] = res.allowable_qps
            if progress is not None:
                progress(t, res.allowable_qps)
        return seen[t]

    best = start
    for step in steps:
        moved = True
        while moved:
            moved = False
            for cand in (best + step, best - step):
                if 0 <= cand <= top and score(cand) > score(best):
                    best, moved = cand, True
                    break
    return TuningResult(best, score(best), start, score(start), dict(seen))


def tune_drs_threshold(
    scenario: Scenario,
    pool: Pool,
    measurement: Measurement = DEFAULT_MEASUREMENT,
    steps: Sequence[int] = DEFAULT_STEPS,
) -> int:
    """The tuned DRS threshold for ``pool`` (see ``tune_drs``)."""
    return tune_drs(scenario, pool, measurement=measurement, steps=steps).threshold
