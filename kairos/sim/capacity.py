"""Allowable throughput: the highest Poisson rate at which 99% of queries meet QoS.

Search: start from a rough capacity estimate, double (or halve) until the rate is bracketed by
a passing and a failing rate, then bisect geometrically until ``hi / lo - 1 <= precision``.

Three rules make a trial's verdict a statement about the pool, not about one finite stream
(docs/design.md, "Allowable throughput"):

- **Long enough to see overload.** A rate above what the pool can sustain builds a queue, but
  only slowly: at ``1 + d`` times the pool's capacity the waiting time grows by about ``d``
  seconds per second, so it takes ``QoS / d`` seconds before queries start to miss. A trial
  therefore lasts at least ``STABILITY_HORIZON * QoS / precision`` seconds of arrivals (more
  queries than ``queries`` when QoS is many service times long), and a rate more than
  ``precision`` above the pool's capacity fails.
- **The nominal rate, exactly.** The unit-rate arrivals are a Poisson process conditioned on
  its count (the exponential gaps are rescaled so the trial's ``n`` arrivals span exactly
  ``n / rate`` seconds), so no seed offers the pool more or less load than the rate tried.
- **Common random numbers.** Every trial of one search reads the same seeded streams (gaps,
  batch sizes, service-time draws; a longer trial extends them), so pass/fail is close to
  monotone in the rate and bisection is sound.

Each trial simulates ``warmup + n`` queries and measures the last ``n``: the first ones see an
empty pool, which flatters the tail. A trial stops as soon as more than 1% of its measured
queries are certain to miss QoS (finished late, or older than QoS and not finished): it has
failed whatever happens next, and overloaded trials become cheap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kairos.catalog import Pool
from kairos.distributor.base import Policy, PolicyContext, make_policy
from kairos.distributor.state import ClusterState
from kairos.errors import ConfigError
from kairos.scenario import QOS_QUANTILE, Scenario
from kairos.sim.engine import PolicyFactory, SimResult, simulate
from kairos.sim.parallel import Executor, run_all
from kairos.sim.records import Metrics
from kairos.sim.search import drive, rate_search
from kairos.workload import Query, QueryStream

MAX_STEPS = 14  # doublings or halvings while bracketing
# What runs a trial: ``simulate``'s signature. The celled service (kairos.sim.celled) passes
# its own, so its capacity is searched with the same trials and verdicts as one pool's.
Simulator = Callable[..., SimResult]
# A trial spans at least this many times QoS / precision of arrivals: a rate (1 + precision)
# times the pool's capacity then has a backlog worth one QoS after 1 / 1.25 = 80% of the
# trial, so about a fifth of its queries miss and it fails clearly.
STABILITY_HORIZON = 1.25


@dataclass(frozen=True)
class Measurement:
    """How an allowable-throughput search measures; every command reads its defaults here.

    ``queries``: measured queries per trial at least (more when QoS is long, see the module
    docstring); ``precision``: the search stops when ``hi / lo - 1 <= precision``; ``seed``:
    of every random stream; ``warmup``: unmeasured leading queries (default
    ``max(200, n / 10)``); ``max_queries``: cap on a trial's measured queries, which bounds
    time and memory (about 300 bytes per query).
    """

    queries: int = 3000
    precision: float = 0.02
    seed: int = 0
    warmup: int | None = None
    max_queries: int = 250_000

    def __post_init__(self) -> None:
        if isinstance(self.queries, bool) or not isinstance(self.queries, int):
            raise ConfigError(
                f"queries per trial {self.queries!r} is not a whole number.",
                "pass --queries as a whole number of at least 100 (default 3000).",
            )
        if self.queries < 100:
            raise ConfigError(
                f"queries per trial {self.queries!r} is too small for a meaningful p99.",
                "pass --queries of at least 100 (default 3000).",
            )
        if not (isinstance(self.precision, int | float) and 0 < self.precision < 1):
            raise ConfigError(
                f"precision {self.precision!r} is not in (0, 1).",
                "pass --precision such as 0.02 (2%).",
            )
        if self.warmup is not None and (not isinstance(self.warmup, int) or self.warmup < 0):
            raise ConfigError(
                f"warm-up {self.warmup!r} is not a whole number >= 0.",
                "leave the warm-up unset (10% of the trial) or pass a count >= 0.",
            )
        if not isinstance(self.max_queries, int) or self.max_queries < self.queries:
            raise ConfigError(
                f"max_queries {self.max_queries!r} is below queries {self.queries!r}.",
                "pass max_queries >= queries.",
            )

    def trial_queries(self, qos_ms: float, rate_qps: float) -> int:
        """Measured queries of a trial at ``rate_qps``: enough arrivals to see overload."""
        need = math.ceil(STABILITY_HORIZON * rate_qps * qos_ms / 1000.0 / self.precision)
        return min(self.max_queries, max(self.queries, need))

    def warmup_for(self, n: int) -> int:
        return default_warmup(n) if self.warmup is None else self.warmup

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_MEASUREMENT = Measurement()
DEFAULT_QUERIES = DEFAULT_MEASUREMENT.queries
DEFAULT_PRECISION = DEFAULT_MEASUREMENT.precision


@dataclass(frozen=True)
class Trial:
    """One simulated rate. A trial that stopped early (it had already failed) reports an
    upper bound on its met fraction and no p99."""

    rate_qps: float
    qos_met_fraction: float
    p99_ms: float
    queries: int = 0
    stopped_early: bool = False

    @property
    def passed(self) -> bool:
        return not self.stopped_early and self.qos_met_fraction >= QOS_QUANTILE


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


def trial_stream(scenario: Scenario, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` arrival times at rate 1 and their batch sizes.

    The arrivals are a Poisson process conditioned on ``n`` arrivals in ``[0, n]``: cumulative
    exponential gaps rescaled so the ``n + 1``-th would land at ``n``. Given its count, a
    Poisson process's points are uniform order statistics, which this is exactly, so every
    seed offers precisely the nominal rate. Gaps and batches come from separate streams and
    are prefix-consistent: a longer trial extends a shorter one's stream.
    """
    children = np.random.SeedSequence(seed).spawn(4)
    cum = np.cumsum(np.random.default_rng(children[2]).exponential(1.0, size=n + 1))
    unit_arrivals = cum[:-1] * (n / cum[-1])
    return unit_arrivals, scenario.mix.sample(n, np.random.default_rng(children[3]))


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


def allowed_misses(n: int) -> int:
    """Most QoS misses among ``n`` measured queries that still pass (same float test)."""
    m = int(n * (1.0 - QOS_QUANTILE)) + 1
    while m > 0 and (n - m) / n < QOS_QUANTILE:
        m -= 1
    return m


class _TrialFailed(Exception):
    """Raised inside a simulation once its measured queries can no longer meet QoS."""

    def __init__(self, misses: int) -> None:
        super().__init__(misses)
        self.misses = misses


class _FailureWatch:
    """Counts the measured queries of a trial that are certain to miss QoS.

    A query misses once it has finished late (``(finish - arrival) * 1000 > qos_ms``, exactly
    as the metrics count it) and, earlier, as soon as it has been in the system longer than
    QoS without finishing (it can only finish later still). When those misses exceed what a
    passing trial allows, the trial has failed whatever happens next and ``_TrialFailed``
    ends the run: an overloaded trial stops about one QoS after its backlog builds up.
    """

    def __init__(self, arrivals: list[float], warmup: int, n: int, qos_ms: float) -> None:
        self.arrivals = arrivals
        self.warmup = warmup
        self.budget = allowed_misses(n)
        self.qos_ms = qos_ms
        # Strictly past QoS, with a margin far above float rounding of the latency.
        self.horizon_s = qos_ms / 1000.0 * (1.0 + 1e-9) + 1e-12
        self.done = bytearray(len(arrivals))
        self.next_old = warmup  # queries before this one (and measured) are older than QoS
        self.finished_late = 0
        self.unfinished_old = 0

    def advance(self, now_s: float) -> None:
        limit = now_s - self.horizon_s
        i, arrivals, done = self.next_old, self.arrivals, self.done
        while i < len(arrivals) and arrivals[i] < limit:
            if not done[i]:
                self.unfinished_old += 1
            i += 1
        self.next_old = i
        self._check()

    def finished(self, qid: int, now_s: float, arrival_s: float) -> None:
        self.done[qid] = 1
        if qid < self.warmup:
            return
        if qid < self.next_old:  # counted as certain to miss while it ran: it did
            self.unfinished_old -= 1
            self.finished_late += 1
        elif (now_s - arrival_s) * 1000.0 > self.qos_ms:
            self.finished_late += 1
        self._check()

    def _check(self) -> None:
        misses = self.finished_late + self.unfinished_old
        if misses > self.budget:
            raise _TrialFailed(misses)


def _stop_when_failed(pol: Policy, watch: _FailureWatch) -> Policy:
    """Make ``pol`` report every arrival and completion to ``watch`` (which may end the run).

    The driver calls ``on_arrival``/``on_finish`` at every event with the clock at that event,
    so wrapping them gives the watch what it needs and the simulator itself needs no hook.
    """
    inner_arrival, inner_finish = pol.on_arrival, pol.on_finish

    def on_arrival(query: Query, state: ClusterState) -> None:
        watch.advance(state.now_s)
        inner_arrival(query, state)

    def on_finish(query: Query, instance: int, state: ClusterState) -> None:
        watch.advance(state.now_s)
        watch.finished(query.qid, state.now_s, query.arrival_s)
        inner_finish(query, instance, state)

    pol.on_arrival = on_arrival  # type: ignore[method-assign]
    pol.on_finish = on_finish  # type: ignore[method-assign]
    return pol


def _factory(
    policy: str | PolicyFactory, options: Mapping[str, Any] | None, watch: _FailureWatch
) -> PolicyFactory:
    def build(ctx: PolicyContext) -> Policy:
        pol = (
            make_policy(policy, ctx, **(options or {})) if isinstance(policy, str) else policy(ctx)
        )
        return _stop_when_failed(pol, watch)

    return build


def run_trial(
    scenario: Scenario,
    pool: Pool,
    policy: str | PolicyFactory,
    measurement: Measurement,
    rate_qps: float,
    policy_options: Mapping[str, Any] | None = None,
    simulator: Simulator = simulate,
) -> tuple[Trial, Metrics | None]:
    """One trial at ``rate_qps``: its verdict, and its metrics unless it stopped early."""
    m = measurement
    n = m.trial_queries(scenario.qos_ms, rate_qps)
    warm = m.warmup_for(n)
    unit, batches = trial_stream(scenario, warm + n, m.seed)
    stream = QueryStream(unit / rate_qps, batches)
    watch = _FailureWatch(stream.arrival_s.tolist(), warm, n, scenario.qos_ms)
    factory = _factory(policy, policy_options, watch)
    try:
        res = simulator(scenario, pool, factory, stream, seed=m.seed)
    except _TrialFailed as failed:
        return Trial(rate_qps, (n - failed.misses) / n, math.nan, n, stopped_early=True), None
    got = res.records.metrics(scenario.qos_ms, warm)
    return Trial(rate_qps, got.qos_met_fraction, got.p99_ms, n), got


def measure(
    scenario: Scenario,
    pool: Pool,
    policy: str | PolicyFactory = "fcfs",
    measurement: Measurement = DEFAULT_MEASUREMENT,
    *,
    policy_options: Mapping[str, Any] | None = None,
    progress: Callable[[Trial], None] | None = None,
    guess_qps: float | None = None,
    simulator: Simulator = simulate,
) -> CapacityResult:
    """Highest arrival rate (qps) at which >= 99% of measured queries finish within QoS.

    ``guess_qps`` (default 0.6 x the rough capacity) is the first rate tried; ``simulator``
    runs each trial (the engine's ``simulate`` unless a celled service is measured).
    """
    m = measurement
    settings = m.as_dict()
    reason = infeasibility_reason(scenario, pool)
    if reason:
        return CapacityResult(0.0, (), None, reason, settings)
    trials: list[Trial] = []
    metrics_at: dict[float, Metrics] = {}

    def run(rate: float) -> bool:
        trial, got = run_trial(scenario, pool, policy, m, rate, policy_options, simulator)
        trials.append(trial)
        if got is not None:
            metrics_at[rate] = got
        if progress is not None:
            progress(trial)
        return trial.passed

    start = guess_qps if guess_qps and guess_qps > 0 else 0.6 * rough_capacity_qps(scenario, pool)
    lo, _ = drive(rate_search(start, m.precision, 2.0, MAX_STEPS), run)
    if lo == 0.0:
        return CapacityResult(
            0.0,
            tuple(trials),
            None,
            f"QoS was missed even at {trials[-1].rate_qps:.3g} qps under this policy",
            settings,
        )
    return CapacityResult(lo, tuple(trials), metrics_at[lo], "", settings)


def allowable_throughput(
    scenario: Scenario,
    pool: Pool,
    policy: str | PolicyFactory = "fcfs",
    *,
    queries: int = DEFAULT_MEASUREMENT.queries,
    warmup: int | None = None,
    seed: int = DEFAULT_MEASUREMENT.seed,
    precision: float = DEFAULT_MEASUREMENT.precision,
    policy_options: Mapping[str, Any] | None = None,
    progress: Callable[[Trial], None] | None = None,
    guess_qps: float | None = None,
) -> CapacityResult:
    """``measure`` with the measurement given as keywords (see ``Measurement``)."""
    m = Measurement(queries=queries, precision=precision, seed=seed, warmup=warmup)
    return measure(
        scenario,
        pool,
        policy,
        m,
        policy_options=policy_options,
        progress=progress,
        guess_qps=guess_qps,
    )


@dataclass(frozen=True, eq=False)
class CapacityJob:
    """One allowable-throughput search, as a value a worker process can run (``run_job``)."""

    scenario: Scenario
    pool: Pool
    policy: str
    measurement: Measurement = DEFAULT_MEASUREMENT
    policy_options: tuple[tuple[str, Any], ...] = ()
    guess_qps: float | None = None
    # When set, only one trial at this rate: the result's allowable_qps is the rate if the
    # trial passed and 0 if it failed (the exact oracle screens pools this way).
    screen_qps: float | None = None


def run_job(job: CapacityJob) -> CapacityResult:
    if job.screen_qps is not None:
        reason = infeasibility_reason(job.scenario, job.pool)
        if reason:
            return CapacityResult(0.0, (), None, reason, job.measurement.as_dict())
        options = dict(job.policy_options) or None
        trial, got = run_trial(
            job.scenario, job.pool, job.policy, job.measurement, job.screen_qps, options
        )
        qps = job.screen_qps if trial.passed else 0.0
        return CapacityResult(qps, (trial,), got, "screen", job.measurement.as_dict())
    return measure(
        job.scenario,
        job.pool,
        job.policy,
        job.measurement,
        policy_options=dict(job.policy_options) or None,
        guess_qps=job.guess_qps,
    )


class Measurer:
    """Runs capacity jobs through an executor and remembers every result.

    The same job (scenario object, pool, policy, options, measurement) always gives the same
    result, so a comparison that meets one pool in several schemes simulates it once.
    """

    def __init__(self, executor: Executor | None = None) -> None:
        self.executor = executor
        self._memo: dict[tuple[Any, ...], CapacityResult] = {}
        self.searches = 0  # capacity searches actually run

    @staticmethod
    def _key(job: CapacityJob) -> tuple[Any, ...]:
        return (
            id(job.scenario),
            str(job.pool),
            job.policy,
            job.policy_options,
            job.measurement,
            job.guess_qps,
            job.screen_qps,
        )

    def run(
        self,
        jobs: Sequence[CapacityJob],
        progress: Callable[[int, CapacityResult], None] | None = None,
    ) -> list[CapacityResult]:
        keys = [self._key(j) for j in jobs]
        todo: list[int] = []
        pending: set[tuple[Any, ...]] = set()
        for i, k in enumerate(keys):
            if k not in self._memo and k not in pending:
                pending.add(k)
                todo.append(i)

        def done(n: int, res: CapacityResult) -> None:
            if progress is not None:
                progress(todo[n], res)

        fresh = run_all(run_job, [jobs[i] for i in todo], self.executor, done)
        self.searches += len(todo)
        for i, res in zip(todo, fresh, strict=True):
            self._memo[keys[i]] = res
        if progress is not None:
            fresh_ids = set(todo)
            for i in range(len(jobs)):
                if i not in fresh_ids:
                    progress(i, self._memo[keys[i]])
        return [self._memo[k] for k in keys]


def measure_all(
    jobs: Sequence[CapacityJob],
    measurer: Measurer | None = None,
    progress: Callable[[int, CapacityResult], None] | None = None,
) -> list[CapacityResult]:
    """Run every job (in parallel when the measurer's executor has workers); job order."""
    return (measurer or Measurer()).run(jobs, progress)
