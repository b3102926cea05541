"""Baselines the allocator is compared with; every one is judged by simulation.

Each returns a ``SearchResult``: the best pool it found, its simulated allowable throughput,
and every pool it had to simulate (``explorations``), which is what an online search would
have had to rent. The KAIROS planner itself explores nothing.

- ``best_homogeneous``: one pool per type, as many instances as the budget buys.
- ``ribbon_search``: RIBBON's Bayesian optimisation over instance counts (Gaussian-process
  surrogate from the ``bayesian-optimization`` package), stopping after ``patience``
  explorations without improvement.
- ``oracle_search``: simulate the top ``top_k`` pools by bound (all of them with ``None``).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kairos.allocator.plan import VERIFY_QUERIES, budget_too_small, check_bound, rank, verify
from kairos.allocator.pools import COST_EPS, check_budget, pool_matrix, type_caps
from kairos.allocator.result import RankedPool
from kairos.catalog import Pool
from kairos.errors import ConfigError
from kairos.scenario import Scenario
from kairos.sim.capacity import DEFAULT_PRECISION, allowable_throughput

DEFAULT_MAX_EXPLORATIONS = 40
DEFAULT_PATIENCE = 8
# Suggestions over budget or already simulated cost nothing but are capped, so a surrogate
# stuck on them cannot loop forever.
SUGGESTIONS_PER_EXPLORATION = 10


@dataclass(frozen=True)
class Exploration:
    """One simulated pool."""

    pool: Pool
    cost_per_hr: float
    allowable_qps: float


@dataclass(frozen=True)
class SearchResult:
    """Best pool a baseline found, and every pool it simulated on the way (in order)."""

    method: str
    policy: str
    pool: Pool
    cost_per_hr: float
    allowable_qps: float
    explorations: int
    history: tuple[Exploration, ...]

    @property
    def exploration_cost_per_hr(self) -> float:
        """Sum of the explored pools' hourly costs: dollars spent if each ran for an hour."""
        return float(sum(e.cost_per_hr for e in self.history))

    def to_json(self) -> dict[str, object]:
        return {
            "method": self.method,
            "policy": self.policy,
            "pool": str(self.pool),
            "cost_per_hr": round(self.cost_per_hr, 6),
            "allowable_qps": self.allowable_qps,
            "explorations": self.explorations,
            "exploration_cost_per_hr": round(self.exploration_cost_per_hr, 6),
        }


def _best(method: str, policy: str, history: list[Exploration]) -> SearchResult:
    top = max(history, key=lambda e: (e.allowable_qps, -e.cost_per_hr))
    return SearchResult(
        method, policy, top.pool, top.cost_per_hr, top.allowable_qps, len(history), tuple(history)
    )


def _check_sim(queries: int, precision: float) -> None:
    if queries < 100 or not 0 < precision < 1:
        raise ConfigError(
            f"simulation size queries={queries!r}, precision={precision!r} is out of range.",
            "use queries >= 100 and 0 < precision < 1.",
        )


def best_homogeneous(
    scenario: Scenario,
    budget_per_hr: float,
    *,
    policy: str = "fcfs",
    queries: int = VERIFY_QUERIES,
    seed: int = 0,
    precision: float = DEFAULT_PRECISION,
    caps: Mapping[str, int] | None = None,
) -> SearchResult:
    """The best single-type pool: each type at the largest count the budget (and caps) allow."""
    _check_sim(queries, precision)
    limits = type_caps(scenario, budget_per_hr, caps)
    history = []
    for t, n in limits.items():
        if n < 1:
            continue
        pool = Pool.of({t: n})
        res = allowable_throughput(
            scenario, pool, policy, queries=queries, seed=seed, precision=precision
        )
        history.append(Exploration(pool, pool.cost_per_hr(scenario.prices), res.allowable_qps))
    if not history:
        raise budget_too_small(scenario, budget_per_hr, "kairos", caps)
    return _best("homogeneous", policy, history)


def ribbon_search(
    scenario: Scenario,
    budget_per_hr: float,
    *,
    policy: str = "fcfs",
    queries: int = VERIFY_QUERIES,
    seed: int = 0,
    precision: float = DEFAULT_PRECISION,
    max_explorations: int = DEFAULT_MAX_EXPLORATIONS,
    patience: int = DEFAULT_PATIENCE,
    caps: Mapping[str, int] | None = None,
) -> SearchResult:
    """RIBBON: Bayesian optimisation of simulated allowable throughput over instance counts.

    The search space is one integer per type in ``[0, cap]``. A suggested pool over budget (or
    empty) is scored 0 without being simulated, as RIBBON does for configurations that break
    its constraints; a pool already simulated is scored from memory. Only new in-budget pools
    count as explorations. The search stops after ``patience`` explorations in a row that do
    not beat the best, or at ``max_explorations``.
    """
    from bayes_opt import BayesianOptimization

    _check_sim(queries, precision)
    if max_explorations < 1 or patience < 1:
        raise ConfigError(
            f"max_explorations={max_explorations!r} / patience={patience!r} is not >= 1.",
            "pass positive values.",
        )
    budget = check_budget(budget_per_hr)
    limits = {t: n for t, n in type_caps(scenario, budget, caps).items() if n > 0}
    if not limits:
        raise budget_too_small(scenario, budget, "kairos", caps)
    names = {f"n{i}": t for i, t in enumerate(limits)}
    with warnings.catch_warnings():
        # Integer parameters are flagged experimental by the library; they are what we need.
        warnings.simplefilter("ignore", UserWarning)
        optimizer = BayesianOptimization(
            f=None,
            pbounds={k: (0, limits[t], int) for k, t in names.items()},
            random_state=seed,
            verbose=0,
            allow_duplicate_points=True,
        )
    seen: dict[Pool, float] = {}
    history: list[Exploration] = []
    best, stale = -1.0, 0
    for _ in range(max_explorations * SUGGESTIONS_PER_EXPLORATION):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            params = optimizer.suggest()
        pool = Pool.of({names[k]: int(round(float(v))) for k, v in params.items()})
        cost = pool.cost_per_hr(scenario.prices) if pool.size else 0.0
        if pool.size == 0 or cost > budget + COST_EPS:
            target = 0.0
        elif pool in seen:
            target = seen[pool]
        else:
            target = allowable_throughput(
                scenario, pool, policy, queries=queries, seed=seed, precision=precision
            ).allowable_qps
            seen[pool] = target
            history.append(Exploration(pool, cost, target))
            stale = 0 if target > best else stale + 1
            best = max(best, target)
        # The library prints a notice to stdout for every repeated point; keep stdout clean.
        with contextlib.redirect_stdout(io.StringIO()):
            optimizer.register(params=params, target=target)
        if len(history) >= max_explorations or stale >= patience:
            break
    if not history:
        # The surrogate never proposed an in-budget pool: fall back to the largest homogeneous.
        return best_homogeneous(
            scenario,
            budget,
            policy=policy,
            queries=queries,
            seed=seed,
            precision=precision,
            caps=caps,
        )
    return _best("ribbon", policy, history)


def oracle_search(
    scenario: Scenario,
    budget_per_hr: float,
    *,
    policy: str = "kairos",
    top_k: int | None = 20,
    bound: str = "kairos",
    queries: int = VERIFY_QUERIES,
    seed: int = 0,
    precision: float = DEFAULT_PRECISION,
    caps: Mapping[str, int] | None = None,
    progress: Callable[[RankedPool], None] | None = None,
) -> SearchResult:
    """Simulate the ``top_k`` pools by ``bound`` (every pool with ``top_k=None``); best wins."""
    _check_sim(queries, precision)
    check_bound(bound)
    if top_k is not None and top_k < 1:
        raise ConfigError(f"top_k {top_k!r} is not >= 1.", "pass top_k >= 1, or None for all.")
    from kairos.allocator.plan import score_pools

    pools = pool_matrix(scenario, budget_per_hr, caps)
    ranked = rank(pools, score_pools(scenario, pools, bound), top_k)
    if not ranked:
        raise budget_too_small(scenario, budget_per_hr, bound, caps)
    done = verify(
        scenario,
        ranked,
        policy=policy,
        queries=queries,
        seed=seed,
        precision=precision,
        progress=progress,
    )
    history = [Exploration(r.pool, r.cost_per_hr, float(r.allowable_qps or 0.0)) for r in done]
    return _best("oracle", policy, history)
