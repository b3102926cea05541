"""Allowable throughput: the highest Poisson rate at which 99% of queries meet QoS.

Search: start from a rough capacity estimate, double (or halve) until the rate is bracketed by
a passing and a failing rate, then bisect geometrically until ``hi / lo - 1 <= precision``.
Every trial replays the same seeded workload scaled in time (the exponential gaps are drawn
once and divided by the rate, the batch sizes and service-time draws are the same), so the
pass/fail outcome is close to monotone in the rate and bisection is sound.

Each trial simulates ``warmup + queries`` queries and measures the last ``queries``: the
first ones see an empty pool, which flatters the tail. See docs/design.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kairos.catalog import Pool
from kairos.errors import ConfigError
from kairos.scenario import Scenario
from kairos.sim.engine import PolicyFactory, simulate
from kairos.sim.records import Metrics
from kairos.sim.search import drive, rate_search
from kairos.workload import QueryStream

DEFAULT_QUERIES = 5000
DEFAULT_PRECISION = 0.02
QOS_QUANTILE = 0.99
MAX_STEPS = 14  # doublings or halvings while bracketing


@dataclass(frozen=True)
class Trial:
    rate_qps: float
    qos_met_fraction: float
    p99_ms: float

    @property
    def passed(self) -> bool:
        return self.qos_met_fraction >= QOS_QUANTILE


@dataclass(frozen=True)
class CapacityResult:
    allowable_qps: float
    trials: tuple[Trial, ...]
    metrics: Metrics | None  # at the allowable rate; None when the pool never meets QoS
    reason: str = ""
    settings: dict[str, Any] = field(default_factory=dict)


def default_warmup(queries: int) -> int:
    return max(200, queries // 10)


def rough_capacity_qps(scenario: Scenario, pool: Pool) -> float:
    """Sum over instances of 1 / mean service time over the mix: a starting point only."""
    total = 0.0
    for t, n in pool.counts:
        mean_ms = float(
            np.dot(scenario.profiles.get(t).mean_ms(scenario.mix.support), scenario.mix.probs)
        )
        total += n * 1000.0 / mean_ms
    return total


def _base_stream(scenario: Scenario, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])
    unit_gaps = rng.exponential(1.0, size=n)
    return np.cumsum(unit_gaps), scenario.mix.sample(n, rng)


def infeasibility_reason(scenario: Scenario, pool: Pool) -> str:
    """Why no rate can work, judged with no queueing at all ('' when some rate might)."""
    support, probs = scenario.mix.support, scenario.mix.probs
    fastest = np.min(
        [scenario.profiles.get(t).quantile_ms(support, QOS_QUANTILE) for t in pool.types], axis=0
    )
    ok = float(probs[fastest <= scenario.qos_ms].sum())
    if ok >= QOS_QUANTILE:
        return ""
    worst = int(support[probs > 0].max())
    return (
        f"even with no queueing only {ok:.1%} of queries can finish within {scenario.qos_ms:g} "
        f"ms on the fastest type of pool {pool} (a batch of {worst} takes "
        f"{float(fastest[support == worst][0]):.1f} ms at p99)"
    )


def allowable_throughput(
    scenario: Scenario,
    pool: Pool,
    policy: str | PolicyFactory = "fcfs",
    *,
    queries: int = DEFAULT_QUERIES,
    warmup: int | None = None,
    seed: int = 0,
    precision: float = DEFAULT_PRECISION,
    policy_options: Mapping[str, Any] | None = None,
    progress: Callable[[Trial], None] | None = None,
) -> CapacityResult:
    """Highest arrival rate (qps) at which >= 99% of measured queries finish within QoS."""
    if queries < 100:
        raise ConfigError(
            f"queries per trial {queries!r} is too small for a meaningful p99.",
            "pass --queries of at least 100 (default 5000).",
        )
    if not 0 < precision < 1:
        raise ConfigError(f"precision {precision!r} is not in (0, 1).", "use e.g. 0.02.")
    warm = default_warmup(queries) if warmup is None else warmup
    settings = {"queries": queries, "warmup": warm, "seed": seed, "precision": precision}
    reason = infeasibility_reason(scenario, pool)
    if reason:
        return CapacityResult(0.0, (), None, reason, settings)
    unit_arrivals, batches = _base_stream(scenario, warm + queries, seed)
    trials: list[Trial] = []
    metrics_at: dict[float, Metrics] = {}

    def run(rate: float) -> bool:
        stream = QueryStream(unit_arrivals / rate, batches)
        res = simulate(scenario, pool, policy, stream, seed=seed, policy_options=policy_options)
        m = res.records.metrics(scenario.qos_ms, warm)
        trial = Trial(rate, m.qos_met_fraction, m.p99_ms)
        trials.append(trial)
        metrics_at[rate] = m
        if progress is not None:
            progress(trial)
        return trial.passed

    lo, _ = drive(
        rate_search(0.6 * rough_capacity_qps(scenario, pool), precision, 2.0, MAX_STEPS), run
    )
    if lo == 0.0:
        return CapacityResult(
            0.0,
            tuple(trials),
            None,
            f"QoS was missed even at {trials[-1].rate_qps:.3g} qps under this policy",
            settings,
        )
    return CapacityResult(lo, tuple(trials), metrics_at[lo], "", settings)
