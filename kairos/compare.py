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
- ``oracle``: the exact oracle: the best pool of the whole budget by simulation under
  ``kairos``, found by branch and bound over the fluid bound (``allocator.exact_oracle``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from kairos import allocator
from kairos.allocator.oracle import ORACLE_DEFAULTS
from kairos.catalog import Pool
from kairos.errors import ConfigError
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
from kairos.sim.tuning import tune_drs
from kairos.workload import poisson_stream


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

    @property
    def m(self) -> Measurement:
        return self.settings.measurement

    def result(
        self,
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
            pool.cost_per_hr(self.scenario.prices),
            qps,
            explored,
            allocator.fluid_bound(self.scenario, pool),
            charged,
            options or {},
            note,
        )

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
        )


SchemeFn = Callable[[_Run], SchemeResult]
SCHEMES: Registry[SchemeFn] = Registry(
    "scheme", "pass --schemes with known names, comma-separated."
)


@SCHEMES.register("kairos")
def _kairos(run: _Run) -> SchemeResult:
    p = allocator.plan(run.scenario, run.budget_per_hr, bound="kairos", top=1, verify_top=0)
    return run.result("kairos", p.pool, "kairos", run.measure(p.pool, "kairos"), 0)


@SCHEMES.register("kairos-verified")
def _kairos_verified(run: _Run) -> SchemeResult:
    p = allocator.plan(
        run.scenario,
        run.budget_per_hr,
        bound="kairos",
        top=1,
        measurement=run.m,
        measurer=run.measurer,
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
    pool = allocator.plan(run.scenario, run.budget_per_hr, bound="fluid", top=1, verify_top=0).pool
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
            "drs", found.pool, "drs", tuned.allowable_qps, found.explorations, False, options
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
    found = allocator.exact_oracle(
        run.scenario,
        run.budget_per_hr,
        measurement=run.m,
        measurer=run.measurer,
        max_simulations=run.settings.oracle_max_simulations,
    )
    within = found.pools_within_budget or 0.0
    note = (
        f"simulated {found.explorations} of {within:,.0f} pools within budget "
        f"({found.searched} searched in full)"
    ) + ("" if found.exact else "; stopped at the cap: not proven best")
    return run.result(
        "oracle", found.pool, "kairos", found.allowable_qps, found.explorations, note=note
    )


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
    ribbon_max_explorations: int = 40
    cdf_queries: int = 5000  # queries of the latency-CDF run at a common load
    oracle_max_simulations: int = ORACLE_DEFAULTS.max_simulations
    schemes: tuple[str, ...] = SCHEMES.names()

    def __post_init__(self) -> None:
        self.measurement  # noqa: B018 - validates queries, precision and seed
        for name in ("top_k", "ribbon_max_explorations", "oracle_max_simulations"):
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
    model: str
    budget_per_hr: float
    qos_ms: float
    settings: CompareSettings
    schemes: tuple[SchemeResult, ...]
    cdf_rate_qps: float = 0.0
    latency_ms: dict[str, np.ndarray] = field(default_factory=dict)

    def scheme(self, name: str) -> SchemeResult:
        return next(s for s in self.schemes if s.name == name)

    def ratio(self, name: str, to: str) -> float:
        base = self.scheme(to).allowable_qps
        return self.scheme(name).allowable_qps / base if base > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "budget_per_hr": self.budget_per_hr,
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
    results: list[SchemeResult] = []
    for name in cfg.schemes:
        results.append(SCHEMES.get(name)(run))
        if progress is not None:
            progress(name)
    comparison = Comparison(scenario.model, budget_per_hr, scenario.qos_ms, cfg, tuple(results))
    return _with_latency_cdfs(scenario, comparison)


def _with_latency_cdfs(scenario: Scenario, comparison: Comparison) -> Comparison:
    """Latency samples of every scheme at one common load: the homogeneous pool's capacity."""
    levels = [s.allowable_qps for s in comparison.schemes if s.allowable_qps > 0]
    if not levels:
        return comparison
    names = [s.name for s in comparison.schemes]
    rate = (
        comparison.scheme("homogeneous").allowable_qps
        if "homogeneous" in names and comparison.scheme("homogeneous").allowable_qps > 0
        else min(levels)
    )
    cfg = comparison.settings
    n = cfg.cdf_queries + default_warmup(cfg.cdf_queries)
    stream = poisson_stream(rate, n, scenario.mix, np.random.default_rng(cfg.seed))
    warm = default_warmup(cfg.cdf_queries)
    latency = {
        s.name: np.sort(
            simulate(
                scenario, s.pool, s.policy, stream, seed=cfg.seed, policy_options=s.policy_options
            ).records.latency_ms[warm:]
        )
        for s in comparison.schemes
    }
    return Comparison(
        comparison.model,
        comparison.budget_per_hr,
        comparison.qos_ms,
        cfg,
        comparison.schemes,
        rate,
        latency,
    )
