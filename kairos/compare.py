"""End-to-end comparison: each scheme is a pool choice plus a distributor.

Every scheme is measured the same way: the simulator's allowable throughput under one
workload, one seed and one precision (``CompareSettings.measurement``). Schemes (a checked
registry, ``SCHEMES``; each is one function below):

- ``kairos``: the pool ranked first by the KAIROS upper bound (no exploration) + ``kairos``.
- ``kairos-verified``: what ``kairos plan`` picks by default: the best of the top pools by the
  KAIROS bound and by the fluid bound after simulating them offline (the simulations use no
  cloud machine, so they are reported but not charged as explorations) + ``kairos``.
- ``kairos-fluid``: the pool with the highest fluid bound (no exploration) + ``kairos``.
- ``homogeneous``: the best single-type pool under the budget + ``fcfs``.
- ``ribbon``: RIBBON's Bayesian optimisation over pools + ``fcfs`` (its own distributor).
- ``drs`` / ``clockwork``: the best pool for that policy among the top-K by bound, found by
  simulation (exploration not charged, as the paper did for its competitors) + that policy.
  The first ``screen_after`` are searched in full, the rest screened against the best of them
  (one trial one precision step below it; only pools that pass are searched in full); the
  same for the pools ``kairos-verified`` simulates.
- ``oracle``: the exact oracle: the best pool of the whole budget by simulation under
  ``kairos``, found by branch and bound over the fluid bound (``allocator.exact_oracle``).

``compare_for_rate`` asks the reverse question: what each scheme pays to hold a target rate
``R``, i.e. the cheapest pool of the scheme's pool space that holds ``R`` in simulation (one
trial at ``R``, the test ``allocator.cheapest_for_rate`` applies) under its policy. Schemes
with a target form (``TARGET_SCHEMES``):

- ``kairos``: ``cheapest_for_rate`` over every pool under ``kairos`` (exact: it is also what
  the oracle would answer, so there is no separate oracle row).
- ``homogeneous``: ``cheapest_for_rate`` over single-type pools under ``fcfs``.
- ``ribbon``: RIBBON's Bayesian optimisation for the cheapest pool that holds ``R`` under
  ``fcfs`` (``allocator.ribbon_for_rate``), within the homogeneous pool's cost.
- ``drs`` / ``clockwork``: ``cheapest_for_rate`` over every pool under that policy (its
  default options: DRS's analytic threshold, not tuned).

``kairos-verified`` and ``kairos-fluid`` have no target form of their own (the verified plan
is ``kairos`` above; a pool chosen by the fluid bound alone need not hold ``R``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from kairos import allocator
from kairos.allocator.baselines import RIBBON_DEFAULTS
from kairos.allocator.oracle import ORACLE_DEFAULTS
from kairos.allocator.target import TargetPlan
from kairos.catalog import Pool
from kairos.errors import ConfigError
from kairos.limits import RATE_QPS
from kairos.registry import Registry
from kairos.scenario import Scenario
from kairos.sim.capacity import (
    DEFAULT_MEASUREMENT,
    CapacityJob,
    Measurement,
    Measurer,
    default_warmup,
)
from kairos.sim.engine import simulate
from kairos.sim.parallel import Executor, run_all
from kairos.sim.tuning import tune_drs
from kairos.workload import QueryStream, poisson_stream


@dataclass(frozen=True)
class SchemeResult:
    name: str
    pool: Pool
    policy: str
    cost_per_hr: float
    allowable_qps: float
    explorations: int
    upper_bound_qps: float
    explorations_charged: bool = True
    policy_options: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # e.g. the exact oracle's "pools simulated of pools within budget"

    def as_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "pool": str(self.pool),
            "policy": self.policy,
            "cost_per_hr": round(self.cost_per_hr, 4),
            "allowable_qps": round(self.allowable_qps, 3),
            "explorations": self.explorations,
            "explorations_charged": self.explorations_charged,
            "upper_bound_qps": round(self.upper_bound_qps, 3),
            "policy_options": self.policy_options,
        }
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class _Run:
    """What every scheme function gets: the problem, the settings and the shared measurer."""

    scenario: Scenario
    budget_per_hr: float
    settings: CompareSettings
    measurer: Measurer
    # The schemes run so far, in order (the oracle starts from the pools they measured).
    done: list[SchemeResult] = field(default_factory=list)
    _picks: dict[str, Pool] = field(default_factory=dict, repr=False)

    def pick(self, bound: str) -> Pool:
        """The pool ranked first by ``bound`` (no simulation), found once per run."""
        if bound not in self._picks:
            found = allocator.plan(
                self.scenario, self.budget_per_hr, bound=bound, top=1, verify_top=0
            )
            self._picks[bound] = found.pool
        return self._picks[bound]

    def prefetch(self, names: tuple[str, ...]) -> None:
        """Measure the bound picks of ``kairos`` and ``kairos-fluid`` together, so that with
        several workers the two searches run at once (each scheme then reads its result from
        the measurer; the same searches, the same figures)."""
        bounds = [b for n, b in (("kairos", "kairos"), ("kairos-fluid", "fluid")) if n in names]
        if len(bounds) > 1 and self.measurer.executor is not None:
            pools = [self.pick(b) for b in bounds]
            self.measurer.run([CapacityJob(self.scenario, p, "kairos", self.m) for p in pools])

    @property
    def m(self) -> Measurement:
        return self.settings.measurement

    def result(
        self, name: str, pool: Pool, policy: str, qps: float, explored: int, **extra: Any
    ) -> SchemeResult:
        """A scheme's result on this run's scenario (``extra``: charged, options, note)."""
        return _scheme_result(self.scenario, name, pool, policy, qps, explored, **extra)

    def measure(self, pool: Pool, policy: str) -> float:
        job = CapacityJob(self.scenario, pool, policy, self.m)
        return self.measurer.run([job])[0].allowable_qps

    def top_k(self, policy: str) -> allocator.SearchResult:
        return allocator.best_of_top(
            self.scenario,
            self.budget_per_hr,
            policy=policy,
            top_k=self.settings.top_k,
            measurement=self.m,
            measurer=self.measurer,
            screen=self.settings.screen_after,
        )


def _scheme_result(
    scenario: Scenario,
    name: str,
    pool: Pool,
    policy: str,
    qps: float,
    explored: int,
    charged: bool = True,
    options: dict[str, Any] | None = None,
    note: str = "",
) -> SchemeResult:
    return SchemeResult(
        name,
        pool,
        policy,
        pool.cost_per_hr(scenario.prices),
        qps,
        explored,
        allocator.fluid_bound(scenario, pool),
        charged,
        options or {},
        note,
    )


SchemeFn = Callable[[_Run], SchemeResult]
SCHEMES: Registry[SchemeFn] = Registry(
    "scheme", "pass --schemes with known names, comma-separated."
)


@SCHEMES.register("kairos")
def _kairos(run: _Run) -> SchemeResult:
    pool = run.pick("kairos")
    return run.result("kairos", pool, "kairos", run.measure(pool, "kairos"), 0)


@SCHEMES.register("kairos-verified")
def _kairos_verified(run: _Run) -> SchemeResult:
    p = allocator.plan(
        run.scenario,
        run.budget_per_hr,
        bound="kairos",
        top=1,
        measurement=run.m,
        measurer=run.measurer,
        screen=run.settings.screen_after,
    )
    assert p.allowable_qps is not None
    return run.result(
        "kairos-verified",
        p.pool,
        "kairos",
        p.allowable_qps,
        p.explorations,
        charged=False,
        note=f"simulated offline: {p.explorations} pools",
    )


@SCHEMES.register("kairos-fluid")
def _kairos_fluid(run: _Run) -> SchemeResult:
    pool = run.pick("fluid")
    return run.result("kairos-fluid", pool, "kairos", run.measure(pool, "kairos"), 0)


@SCHEMES.register("homogeneous")
def _homogeneous(run: _Run) -> SchemeResult:
    h = allocator.best_homogeneous(
        run.scenario, run.budget_per_hr, measurement=run.m, measurer=run.measurer
    )
    return run.result("homogeneous", h.pool, "fcfs", h.allowable_qps, h.explorations)


@SCHEMES.register("ribbon")
def _ribbon(run: _Run) -> SchemeResult:
    r = allocator.ribbon_search(
        run.scenario,
        run.budget_per_hr,
        policy="fcfs",
        measurement=run.m,
        max_explorations=run.settings.ribbon_max_explorations,
        measurer=run.measurer,
    )
    return run.result("ribbon", r.pool, "fcfs", r.allowable_qps, r.explorations)


@SCHEMES.register("drs")
def _drs(run: _Run) -> SchemeResult:
    # Rank the candidate pools with DRS's analytic threshold, then hill-climb the threshold
    # on the winner (tuning is not charged, as the paper did).
    found = run.top_k("drs")
    tuned = tune_drs(run.scenario, found.pool, measurement=run.m)
    if tuned.allowable_qps > found.allowable_qps:
        options = {"threshold": tuned.threshold}
        return run.result(
            "drs",
            found.pool,
            "drs",
            tuned.allowable_qps,
            found.explorations,
            charged=False,
            options=options,
        )
    return run.result(
        "drs", found.pool, "drs", found.allowable_qps, found.explorations, charged=False
    )


@SCHEMES.register("clockwork")
def _clockwork(run: _Run) -> SchemeResult:
    found = run.top_k("clockwork")
    return run.result(
        "clockwork",
        found.pool,
        "clockwork",
        found.allowable_qps,
        found.explorations,
        charged=False,
    )


@SCHEMES.register("oracle")
def _oracle(run: _Run) -> SchemeResult:
    # The pools the kairos schemes already searched in full under the oracle's policy and
    # measurement: the measurer holds their results, so the oracle's floor starts at the best
    # of them instead of searching its first wave in full (the answer is the same).
    seeds = [
        s.pool
        for s in run.done
        if s.policy == ORACLE_DEFAULTS.policy and not s.policy_options and s.allowable_qps > 0
    ]
    found = allocator.exact_oracle(
        run.scenario,
        run.budget_per_hr,
        measurement=run.m,
        measurer=run.measurer,
        max_simulations=run.settings.oracle_max_simulations,
        seeds=seeds,
    )
    within = found.pools_within_budget or 0.0
    note = (
        f"simulated {found.explorations} of {within:,.0f} pools within budget "
        f"({found.searched} searched in full)"
    ) + ("" if found.exact else "; stopped at the cap: not proven best")
    return run.result(
        "oracle", found.pool, "kairos", found.allowable_qps, found.explorations, note=note
    )


@dataclass
class _RateRun:
    """What every target-mode scheme function gets (``compare_for_rate``)."""

    scenario: Scenario
    target_qps: float
    settings: CompareSettings
    measurer: Measurer
    _plans: dict[tuple[str, bool], TargetPlan] = field(default_factory=dict, repr=False)

    @property
    def m(self) -> Measurement:
        return self.settings.measurement

    def held_qps(self, pool: Pool, policy: str) -> float:
        """The pool's allowable throughput, searched in full. It held the target in its trial,
        and the search's passing rate sits within the precision below its limit, so the
        larger of the two is reported (as ``cheapest_for_rate`` does)."""
        job = CapacityJob(self.scenario, pool, policy, self.m)
        return max(self.measurer.run([job])[0].allowable_qps, self.target_qps)

    def cheapest_plan(self, policy: str, single_type: bool = False) -> TargetPlan:
        """``cheapest_for_rate`` for ``policy``, searched once per run: RIBBON's space is
        bounded by the homogeneous answer, which is also a scheme of its own."""
        key = (policy, single_type)
        if key not in self._plans:
            self._plans[key] = allocator.cheapest_for_rate(
                self.scenario,
                self.target_qps,
                policy=policy,
                measurement=self.m,
                measurer=self.measurer,
                single_type=single_type,
            )
        return self._plans[key]

    def cheapest(
        self, name: str, policy: str, *, single_type: bool = False, charged: bool = False
    ) -> SchemeResult:
        found = self.cheapest_plan(policy, single_type)
        assert found.allowable_qps is not None
        note = f"{found.candidates_tried} pools tried at {self.target_qps:g} q/s, cheapest first"
        return _scheme_result(
            self.scenario,
            name,
            found.pool,
            policy,
            found.allowable_qps,
            found.candidates_tried,
            charged,
            note=note,
        )


RateSchemeFn = Callable[[_RateRun], SchemeResult]
TARGET_SCHEMES: Registry[RateSchemeFn] = Registry(
    "target-mode scheme",
    "under --target-qps pass --schemes from kairos, homogeneous, ribbon, drs, clockwork.",
)


@TARGET_SCHEMES.register("kairos")
def _kairos_for_rate(run: _RateRun) -> SchemeResult:
    return run.cheapest("kairos", "kairos")


@TARGET_SCHEMES.register("homogeneous")
def _homogeneous_for_rate(run: _RateRun) -> SchemeResult:
    return run.cheapest("homogeneous", "fcfs", single_type=True, charged=True)


@TARGET_SCHEMES.register("ribbon")
def _ribbon_for_rate(run: _RateRun) -> SchemeResult:
    # The homogeneous answer bounds RIBBON's space (and is its answer if nothing cheaper
    # holds); the run has it already when the homogeneous scheme ran.
    ceiling = run.cheapest_plan("fcfs", single_type=True).pool
    found = allocator.ribbon_for_rate(
        run.scenario,
        run.target_qps,
        ceiling,
        policy="fcfs",
        measurement=run.m,
        max_explorations=run.settings.ribbon_max_explorations,
        measurer=run.measurer,
    )
    fell_back = found.method == "ceiling"
    note = "no explored pool held the target: the homogeneous pool" if fell_back else ""
    qps = run.held_qps(found.pool, "fcfs")
    return _scheme_result(
        run.scenario, "ribbon", found.pool, "fcfs", qps, found.explorations, note=note
    )


@TARGET_SCHEMES.register("drs")
def _drs_for_rate(run: _RateRun) -> SchemeResult:
    return run.cheapest("drs", "drs")


@TARGET_SCHEMES.register("clockwork")
def _clockwork_for_rate(run: _RateRun) -> SchemeResult:
    return run.cheapest("clockwork", "clockwork")


def target_schemes(settings: CompareSettings) -> tuple[str, ...]:
    """The schemes a target-mode comparison runs: every one with a target form when
    ``settings`` keeps the default (every scheme); otherwise each named one, checked."""
    if settings.schemes == SCHEMES.names():
        return TARGET_SCHEMES.names()
    return TARGET_SCHEMES.check_all(settings.schemes)


@dataclass(frozen=True)
class CompareSettings:
    """Simulation sizes shared by every scheme of one comparison, checked on construction.

    The CLI reads its defaults from here (and the measurement defaults from
    ``kairos.sim.capacity.Measurement``).
    """

    queries: int = DEFAULT_MEASUREMENT.queries
    precision: float = DEFAULT_MEASUREMENT.precision
    seed: int = DEFAULT_MEASUREMENT.seed
    top_k: int = 20  # pools by bound that drs and clockwork simulate
    # Pools searched in full by a scheme that simulates several (drs, clockwork and
    # kairos-verified) before the rest are screened against the best of them (one trial each;
    # a pool that passes is searched in full): the same pick at a fraction of the trials.
    screen_after: int = 2
    ribbon_max_explorations: int = RIBBON_DEFAULTS.max_explorations
    cdf_queries: int = 5000  # queries of the latency-CDF run at a common load
    oracle_max_simulations: int = ORACLE_DEFAULTS.max_simulations
    schemes: tuple[str, ...] = SCHEMES.names()

    def __post_init__(self) -> None:
        self.measurement  # noqa: B018 - validates queries, precision and seed
        for name in ("top_k", "screen_after", "ribbon_max_explorations", "oracle_max_simulations"):
            _check_count(name, getattr(self, name), 1)
        _check_count("cdf_queries", self.cdf_queries, 100)
        if isinstance(self.schemes, str):
            raise ConfigError(
                f"schemes {self.schemes!r} is one string, not a list of names.",
                "pass a tuple of scheme names, e.g. ('kairos', 'oracle').",
            )
        object.__setattr__(self, "schemes", SCHEMES.check_all(self.schemes))

    @property
    def measurement(self) -> Measurement:
        return Measurement(queries=self.queries, precision=self.precision, seed=self.seed)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {
            "schemes": list(self.schemes)
        }


def _check_count(name: str, value: object, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(
            f"setting {name}={value!r} is not a whole number >= {least}.",
            f"pass --{name.replace('_', '-')} of at least {least}.",
        )


COMPARE_DEFAULTS = CompareSettings()


@dataclass(frozen=True)
class Comparison:
    """One comparison: at a budget (``budget_per_hr``; schemes compete on throughput) or, from
    ``compare_for_rate``, at a target rate (``target_qps``, budget None; on cost)."""

    model: str
    budget_per_hr: float | None
    qos_ms: float
    settings: CompareSettings
    schemes: tuple[SchemeResult, ...]
    cdf_rate_qps: float = 0.0
    latency_ms: dict[str, np.ndarray] = field(default_factory=dict)
    target_qps: float | None = None

    @property
    def level(self) -> float:
        """The budget, or the target rate in target mode (what a sweep varies)."""
        return self.target_qps if self.target_qps is not None else float(self.budget_per_hr or 0)

    @property
    def level_text(self) -> str:
        if self.target_qps is not None:
            return f"target {self.target_qps:g} q/s"
        return f"budget ${self.budget_per_hr:g}/h"

    def scheme(self, name: str) -> SchemeResult:
        return next(s for s in self.schemes if s.name == name)

    def ratio(self, name: str, to: str) -> float:
        base = self.scheme(to).allowable_qps
        return self.scheme(name).allowable_qps / base if base > 0 else float("inf")

    def cost_ratio(self, name: str, to: str) -> float:
        """``name``'s hourly cost over ``to``'s (below 1: ``name`` is cheaper)."""
        return self.scheme(name).cost_per_hr / self.scheme(to).cost_per_hr

    def as_dict(self) -> dict[str, Any]:
        level: dict[str, Any] = (
            {"target_qps": self.target_qps}
            if self.target_qps is not None
            else {"budget_per_hr": self.budget_per_hr}
        )
        return {
            "model": self.model,
            **level,
            "qos_ms": self.qos_ms,
            "settings": self.settings.as_dict(),
            "schemes": [s.as_dict() for s in self.schemes],
        }


def compare(
    scenario: Scenario,
    budget_per_hr: float,
    settings: CompareSettings | None = None,
    progress: Callable[[str], None] | None = None,
    measurer: Measurer | None = None,
) -> Comparison:
    """Run every scheme in ``settings.schemes`` on one scenario and budget.

    ``measurer`` runs the capacity searches (pass one with an executor to run them in
    parallel; results are the same as serial) and remembers them across schemes.
    """
    cfg = settings or CompareSettings()
    run = _Run(scenario, budget_per_hr, cfg, measurer or Measurer())
    results = run.done
    run.prefetch(cfg.schemes)
    for name in cfg.schemes:
        results.append(SCHEMES.get(name)(run))
        if progress is not None:
            progress(name)
    comparison = Comparison(scenario.model, budget_per_hr, scenario.qos_ms, cfg, tuple(results))
    return _with_latency_cdfs(scenario, comparison, executor=run.measurer.executor)


def compare_for_rate(
    scenario: Scenario,
    target_qps: float,
    settings: CompareSettings | None = None,
    progress: Callable[[str], None] | None = None,
    measurer: Measurer | None = None,
) -> Comparison:
    """What each scheme of ``target_schemes(settings)`` pays to hold ``target_qps`` (see the
    module docstring); the latency CDFs are taken at the target rate, which every pool holds."""
    RATE_QPS.check(target_qps, "--target-qps")
    cfg = settings or CompareSettings()
    run = _RateRun(scenario, float(target_qps), cfg, measurer or Measurer())
    results: list[SchemeResult] = []
    for name in target_schemes(cfg):
        results.append(TARGET_SCHEMES.get(name)(run))
        if progress is not None:
            progress(name)
    comparison = Comparison(
        scenario.model, None, scenario.qos_ms, cfg, tuple(results), target_qps=float(target_qps)
    )
    return _with_latency_cdfs(scenario, comparison, float(target_qps), run.measurer.executor)


def _with_latency_cdfs(
    scenario: Scenario,
    comparison: Comparison,
    rate: float | None = None,
    executor: Executor | None = None,
) -> Comparison:
    """Latency samples of every scheme at one common load: ``rate`` if given, else the
    homogeneous pool's capacity."""
    levels = [s.allowable_qps for s in comparison.schemes if s.allowable_qps > 0]
    if not levels:
        return comparison
    names = [s.name for s in comparison.schemes]
    if rate is None:
        rate = (
            comparison.scheme("homogeneous").allowable_qps
            if "homogeneous" in names and comparison.scheme("homogeneous").allowable_qps > 0
            else min(levels)
        )
    cfg = comparison.settings
    n = cfg.cdf_queries + default_warmup(cfg.cdf_queries)
    stream = poisson_stream(rate, n, scenario.mix, np.random.default_rng(cfg.seed))
    warm = default_warmup(cfg.cdf_queries)
    runs = [
        _CdfRun(scenario, s.pool, s.policy, stream, cfg.seed, s.policy_options, warm)
        for s in comparison.schemes
    ]
    # One simulation per scheme, on the comparison's workers when it has them (the same
    # seeded runs wherever they run).
    found = run_all(_cdf_latency, runs, executor)
    latency = {s.name: lat for s, lat in zip(comparison.schemes, found, strict=True)}
    return replace(comparison, cdf_rate_qps=rate, latency_ms=latency)


@dataclass(frozen=True)
class _CdfRun:
    """One scheme's latency-CDF simulation, as a value a worker process can run."""

    scenario: Scenario
    pool: Pool
    policy: str
    stream: QueryStream
    seed: int
    policy_options: dict[str, Any]
    warm: int


def _cdf_latency(run: _CdfRun) -> np.ndarray:
    """The run's measured latencies (ms), sorted."""
    sim = simulate(
        run.scenario,
        run.pool,
        run.policy,
        run.stream,
        seed=run.seed,
        policy_options=run.policy_options,
    )
    return np.sort(sim.records.latency_ms[run.warm :])
