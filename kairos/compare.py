"""End-to-end comparison: each scheme is a pool choice plus a distributor.

Every scheme is measured the same way: the simulator's allowable throughput under one
workload, one seed and one precision. Schemes:

- ``kairos``: the pool ranked first by the KAIROS upper bound (no exploration) + ``kairos``.
- ``kairos-fluid``: the pool the exact MILP picks (no exploration) + ``kairos``.
- ``homogeneous``: the best single-type pool under the budget + ``fcfs``.
- ``ribbon``: RIBBON's Bayesian optimisation over pools + ``fcfs`` (its own distributor).
- ``drs`` / ``clockwork``: the best pool for that policy among the top-K by bound, found by
  simulation (exploration not charged, as the paper did for its competitors) + that policy.
- ``oracle``: the best pool among the top-K by simulation + ``kairos`` (an upper reference).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kairos import allocator
from kairos.catalog import Pool
from kairos.distributor.tuning import tune_drs
from kairos.errors import ConfigError
from kairos.scenario import Scenario
from kairos.sim.capacity import allowable_throughput, default_warmup
from kairos.sim.engine import simulate
from kairos.workload import poisson_stream

SCHEMES = ("kairos", "kairos-fluid", "homogeneous", "ribbon", "drs", "clockwork", "oracle")


class CompareSettings(BaseModel):
    """Simulation sizes shared by every scheme of one comparison (validated on construction)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    queries: int = Field(3000, ge=100, description="measured queries per capacity trial")
    precision: float = Field(0.03, gt=0.0, lt=1.0, description="relative bisection precision")
    seed: int = 0
    top_k: int = Field(20, ge=1, description="pools by bound that oracle/drs/clockwork simulate")
    ribbon_max_explorations: int = Field(40, ge=1)
    cdf_queries: int = Field(5000, ge=100)
    schemes: tuple[str, ...] = SCHEMES

    @classmethod
    def checked(cls, **values: Any) -> CompareSettings:
        """Build settings, turning a validation failure into a ConfigError with a hint."""
        try:
            return cls(**values)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(p) for p in first["loc"])
            raise ConfigError(
                f"setting {name}={first.get('input')!r} is invalid ({first['msg']}).",
                f"pass --{name.replace('_', '-')} within its documented range.",
            ) from None


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

    def as_json(self) -> dict[str, Any]:
        return {
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

    def as_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "budget_per_hr": self.budget_per_hr,
            "qos_ms": self.qos_ms,
            "settings": self.settings.model_dump(mode="json"),
            "schemes": [s.as_json() for s in self.schemes],
        }


class _Measurer:
    """Allowable throughput with one shared setting, memoised by (pool, policy, options)."""

    def __init__(self, scenario: Scenario, settings: CompareSettings) -> None:
        self.scenario = scenario
        self.settings = settings
        self._cache: dict[tuple[str, str, str], float] = {}

    def __call__(self, pool: Pool, policy: str, **options: Any) -> float:
        key = (str(pool), policy, repr(sorted(options.items())))
        if key not in self._cache:
            res = allowable_throughput(
                self.scenario,
                pool,
                policy,
                queries=self.settings.queries,
                seed=self.settings.seed,
                precision=self.settings.precision,
                policy_options=options or None,
            )
            self._cache[key] = res.allowable_qps
        return self._cache[key]


def compare(
    scenario: Scenario,
    budget_per_hr: float,
    settings: CompareSettings | None = None,
    progress: Callable[[str], None] | None = None,
) -> Comparison:
    """Run every scheme in ``settings.schemes`` on one scenario and budget."""
    cfg = settings or CompareSettings()
    measure = _Measurer(scenario, cfg)
    ranked = allocator.plan(scenario, budget_per_hr, bound="kairos", top=1)
    results: list[SchemeResult] = []

    def best_of_top_k(policy: str) -> allocator.SearchResult:
        """The best pool for ``policy`` among the top-K by the KAIROS bound (simulated)."""
        return allocator.oracle_search(
            scenario,
            budget_per_hr,
            policy=policy,
            top_k=cfg.top_k,
            queries=cfg.queries,
            seed=cfg.seed,
            precision=cfg.precision,
        )

    def add(
        name: str,
        pool: Pool,
        policy: str,
        qps: float,
        explored: int,
        charged: bool = True,
        options: dict[str, Any] | None = None,
    ) -> None:
        results.append(
            SchemeResult(
                name,
                pool,
                policy,
                pool.cost_per_hr(scenario.prices),
                qps,
                explored,
                allocator.fluid_bound(scenario, pool),
                charged,
                options or {},
            )
        )
        if progress is not None:
            progress(name)

    for name in cfg.schemes:
        if name == "kairos":
            add(name, ranked.pool, "kairos", measure(ranked.pool, "kairos"), 0)
        elif name == "kairos-fluid":
            pool = allocator.solve_milp(scenario, budget_per_hr).pool
            add(name, pool, "kairos", measure(pool, "kairos"), 0)
        elif name == "homogeneous":
            h = allocator.best_homogeneous(
                scenario,
                budget_per_hr,
                queries=cfg.queries,
                seed=cfg.seed,
                precision=cfg.precision,
            )
            add(name, h.pool, "fcfs", h.allowable_qps, h.explorations)
        elif name == "ribbon":
            r = allocator.ribbon_search(
                scenario,
                budget_per_hr,
                policy="fcfs",
                queries=cfg.queries,
                seed=cfg.seed,
                precision=cfg.precision,
                max_explorations=cfg.ribbon_max_explorations,
            )
            add(name, r.pool, "fcfs", r.allowable_qps, r.explorations)
        elif name == "clockwork":
            found = best_of_top_k(name)
            add(name, found.pool, name, found.allowable_qps, found.explorations, charged=False)
        elif name == "drs":
            # Rank the candidate pools with DRS's analytic threshold, then hill-climb the
            # threshold on the winner (tuning is not charged, as the paper did).
            found = best_of_top_k(name)
            pool, qps, n = found.pool, found.allowable_qps, found.explorations
            tuned = tune_drs(
                scenario, pool, queries=cfg.queries, seed=cfg.seed, precision=cfg.precision
            )
            if tuned.allowable_qps > qps:
                add(name, pool, name, tuned.allowable_qps, n, False, {"threshold": tuned.threshold})
            else:
                add(name, pool, name, qps, n, charged=False)
        elif name == "oracle":
            found = best_of_top_k("kairos")
            add(name, found.pool, "kairos", found.allowable_qps, found.explorations)
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
