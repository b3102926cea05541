"""Baselines the allocator is compared with; every one is judged by simulation.

Each returns a ``SearchResult``: the best pool it found, its simulated allowable throughput,
and every pool it had to simulate (``explorations``), which is what an online search would
have had to rent. The KAIROS planner itself explores nothing.

- ``best_homogeneous``: one pool per type, as many instances as the budget buys.
- ``ribbon_search``: RIBBON's Bayesian optimisation over instance counts (Gaussian-process
  surrogate from the ``bayesian-optimization`` package), stopping after ``patience``
  explorations without improvement; ``ribbon_for_rate`` asks it for the cheapest pool that
  holds a rate instead.
- ``best_of_top``: simulate the top ``top_k`` pools by a bound; what DRS and Clockwork get as
  their pool search in comparisons. (The exact oracle is ``kairos.allocator.oracle``.)
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Callable, Mapping

from kairos.allocator.choices import BOUNDS
from kairos.allocator.feasible import budget_too_small
from kairos.allocator.plan import verify
from kairos.allocator.pools import COST_EPS, check_budget, type_caps
from kairos.allocator.ranking import top_pools
from kairos.allocator.result import Exploration, RankedPool, SearchResult
from kairos.catalog import Pool
from kairos.errors import ConfigError
from kairos.scenario import Scenario
from kairos.sim.capacity import (
    DEFAULT_MEASUREMENT,
    CapacityJob,
    Measurement,
    Measurer,
    measure,
    measure_all,
)

DEFAULT_MAX_EXPLORATIONS = 40
DEFAULT_PATIENCE = 8
# Suggestions over budget or already simulated cost nothing but are capped, so a surrogate
# stuck on them cannot loop forever.
SUGGESTIONS_PER_EXPLORATION = 10


def _best(method: str, policy: str, history: list[Exploration]) -> SearchResult:
    """The best exploration: highest allowable rate, then cheaper, then earliest."""
    top = max(enumerate(history), key=lambda e: (e[1].allowable_qps, -e[1].cost_per_hr, -e[0]))[1]
    return SearchResult(
        method, policy, top.pool, top.cost_per_hr, top.allowable_qps, len(history), tuple(history)
    )


def best_homogeneous(
    scenario: Scenario,
    budget_per_hr: float,
    *,
    policy: str = "fcfs",
    measurement: Measurement = DEFAULT_MEASUREMENT,
    caps: Mapping[str, int] | None = None,
    measurer: Measurer | None = None,
) -> SearchResult:
    """The best single-type pool: each type at the largest count the budget (and caps) allow."""
    limits = type_caps(scenario, budget_per_hr, caps)
    pools = [Pool.of({t: n}) for t, n in limits.items() if n >= 1]
    if not pools:
        raise budget_too_small(scenario, budget_per_hr, "kairos", caps)
    jobs = [CapacityJob(scenario, pool, policy, measurement) for pool in pools]
    results = measure_all(jobs, measurer)
    history = [
        Exploration(pool, pool.cost_per_hr(scenario.prices), res.allowable_qps)
        for pool, res in zip(pools, results, strict=True)
    ]
    return _best("homogeneous", policy, history)


def ribbon_search(
    scenario: Scenario,
    budget_per_hr: float,
    *,
    policy: str = "fcfs",
    measurement: Measurement = DEFAULT_MEASUREMENT,
    max_explorations: int = DEFAULT_MAX_EXPLORATIONS,
    patience: int = DEFAULT_PATIENCE,
    caps: Mapping[str, int] | None = None,
) -> SearchResult:
    """RIBBON: Bayesian optimisation of simulated allowable throughput over instance counts.

    The search space is one integer per type in ``[0, cap]``. A suggested pool over budget (or
    empty) is scored 0 without being simulated, as RIBBON does for configurations that break
    its constraints; a pool already simulated is scored from memory. Only new in-budget pools
    count as explorations. The search stops after ``patience`` explorations in a row that do
    not beat the best, or at ``max_explorations``. It is sequential by nature (each suggestion
    depends on every score before it), so it runs in this process.
    """
    if max_explorations < 1 or patience < 1:
        raise ConfigError(
            f"max_explorations={max_explorations!r} / patience={patience!r} is not >= 1.",
            "pass positive values.",
        )
    budget = check_budget(budget_per_hr)
    limits = {t: n for t, n in type_caps(scenario, budget, caps).items() if n > 0}
    if not limits:
        raise budget_too_small(scenario, budget, "kairos", caps)
    history: list[Exploration] = []

    def score(pool: Pool) -> tuple[float, bool]:
        cost = pool.cost_per_hr(scenario.prices) if pool.size else 0.0
        if pool.size == 0 or cost > budget + COST_EPS:
            return 0.0, False
        qps = measure(scenario, pool, policy, measurement).allowable_qps
        history.append(Exploration(pool, cost, qps))
        return qps, True

    bayes_search(limits, measurement.seed, max_explorations, patience, score)
    if not history:
        # The surrogate never proposed an in-budget pool: fall back to the largest homogeneous.
        return best_homogeneous(scenario, budget, policy=policy, measurement=measurement, caps=caps)
    return _best("ribbon", policy, history)


def ribbon_for_rate(
    scenario: Scenario,
    target_qps: float,
    ceiling: Pool,
    *,
    policy: str = "fcfs",
    measurement: Measurement = DEFAULT_MEASUREMENT,
    max_explorations: int = DEFAULT_MAX_EXPLORATIONS,
    patience: int = DEFAULT_PATIENCE,
    measurer: Measurer | None = None,
) -> SearchResult:
    """RIBBON's own question (its paper minimises cost at a given load): the cheapest pool
    that holds ``target_qps`` under ``policy``, by Bayesian optimisation over counts.

    ``ceiling`` is a pool known to hold the target (the cheapest homogeneous one): the space
    is every pool that costs no more (one count per type in ``[0, ceiling cost / price]``),
    and it is the answer (``method="ceiling"``) when no explored pool holds the target. A pool
    is explored with one trial at the target (the test ``cheapest_for_rate`` applies) and
    scores ``-cost / ceiling cost`` (in [-1, 0)) when it holds and ``-2 + its met fraction``
    (in [-2, -1]) when it misses, so a near miss ranks above a far one and every pool that
    holds above both; an empty pool or one over the ceiling scores -2 without a trial. The
    result's ``allowable_qps`` is the target (held in one trial), not a full search.
    """
    if max_explorations < 1 or patience < 1:
        raise ConfigError(
            f"max_explorations={max_explorations!r} / patience={patience!r} is not >= 1.",
            "pass positive values.",
        )
    measurer = measurer or Measurer()
    top = ceiling.cost_per_hr(scenario.prices)
    limits = {t: n for t, n in type_caps(scenario, top).items() if n > 0}
    history: list[Exploration] = []

    def score(pool: Pool) -> tuple[float, bool]:
        cost = pool.cost_per_hr(scenario.prices) if pool.size else 0.0
        if pool.size == 0 or cost > top + COST_EPS:
            return -2.0, False
        job = CapacityJob(scenario, pool, policy, measurement, screen_qps=target_qps)
        (res,) = measurer.run([job])
        held = res.allowable_qps >= target_qps
        history.append(Exploration(pool, cost, target_qps if held else 0.0, searched=False))
        met = res.trials[0].qos_met_fraction if res.trials else 0.0
        return (-cost / top, True) if held else (-2.0 + met, True)

    bayes_search(limits, measurement.seed, max_explorations, patience, score)
    held = [e for e in history if e.allowable_qps >= target_qps]
    if not held:
        return SearchResult(
            "ceiling", policy, ceiling, top, target_qps, len(history), tuple(history)
        )
    best = min(held, key=lambda e: e.cost_per_hr)  # the first of the cheapest
    return SearchResult(
        "ribbon", policy, best.pool, best.cost_per_hr, target_qps, len(history), tuple(history)
    )


def bayes_search(
    limits: Mapping[str, int],
    seed: int,
    max_explorations: int,
    patience: int,
    score: Callable[[Pool], tuple[float, bool]],
) -> None:
    """RIBBON's loop: Bayesian optimisation of ``score`` over one count per type in
    ``[0, limits[type]]``.

    ``score(pool)`` returns the value to maximise and whether it cost a simulation (an
    exploration); a pool already scored is answered from memory. The loop stops after
    ``patience`` explorations in a row that do not beat the best, at ``max_explorations``, or
    after ``SUGGESTIONS_PER_EXPLORATION`` suggestions per allowed exploration.
    """
    # Imported here: the library pulls in scikit-learn, which every other command can skip.
    from bayes_opt import BayesianOptimization

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
    explored, best, stale = 0, -math.inf, 0
    for _ in range(max_explorations * SUGGESTIONS_PER_EXPLORATION):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            params = optimizer.suggest()
        pool = Pool.of({names[k]: int(round(float(v))) for k, v in params.items()})
        if pool in seen:
            value = seen[pool]
        else:
            value, simulated = score(pool)
            seen[pool] = value
            if simulated:
                explored += 1
                stale = 0 if value > best else stale + 1
                best = max(best, value)
        # The library prints a notice to stdout for every repeated point; keep stdout clean.
        with contextlib.redirect_stdout(io.StringIO()):
            optimizer.register(params=params, target=value)
        if explored >= max_explorations or stale >= patience:
            break


def best_of_top(
    scenario: Scenario,
    budget_per_hr: float,
    *,
    policy: str = "kairos",
    top_k: int = 20,
    bound: str = "kairos",
    measurement: Measurement = DEFAULT_MEASUREMENT,
    caps: Mapping[str, int] | None = None,
    measurer: Measurer | None = None,
    progress: Callable[[RankedPool], None] | None = None,
) -> SearchResult:
    """Simulate the ``top_k`` pools by ``bound``; the best wins (a scheme's own pool search)."""
    BOUNDS.check(bound)
    if not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k {top_k!r} is not >= 1.", "pass top_k >= 1.")
    ranked = top_pools(scenario, budget_per_hr, bound, top_k, caps).ranked
    if not ranked:
        raise budget_too_small(scenario, budget_per_hr, bound, caps)
    done = verify(
        scenario,
        ranked,
        policy=policy,
        measurement=measurement,
        measurer=measurer,
        progress=progress,
    )
    history = [
        Exploration(r.pool, r.cost_per_hr, float(r.allowable_qps or 0.0), r.upper_bound_qps)
        for r in done
    ]
    return _best("top-k", policy, history)
