"""Baselines the allocator is compared with; every one is judged by simulation.

Each returns a ``SearchResult``: the best pool it found, its simulated allowable throughput,
and every pool it had to simulate (``explorations``), which is what an online search would
have had to rent. The KAIROS planner itself explores nothing.

- ``best_homogeneous``: one pool per type, as many instances as the budget buys.
- ``ribbon_search``: RIBBON's Bayesian optimisation over instance counts (the Gaussian-process
  surrogate and upper-confidence acquisition of the ``bayesian-optimization`` package, the
  acquisition scored over every candidate pool at once), stopping after ``patience``
  explorations without improvement; ``ribbon_for_rate`` asks it for the cheapest pool that
  holds a rate instead.
- ``best_of_top``: simulate the top ``top_k`` pools by a bound; what DRS and Clockwork get as
  their pool search in comparisons. (The exact oracle is ``kairos.allocator.oracle``.)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kairos.allocator.choices import BOUNDS
from kairos.allocator.feasible import budget_too_small
from kairos.allocator.plan import screened_search, verify
from kairos.allocator.pools import COST_EPS, PoolMatrix, check_budget, listed_pools, type_caps
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
    measure_all,
)


@dataclass(frozen=True)
class RibbonDefaults:
    """RIBBON's search settings, declared once.

    ``max_explorations`` / ``patience``: the exploration budget (new in-budget pools
    simulated; stop after ``patience`` in a row without improvement). ``kappa``: the upper
    confidence bound's weight on the surrogate's standard deviation (the value of
    ``bayes_opt``'s default acquisition). ``batch``: pools suggested per round and simulated
    together on the measurer's workers; fixed, so results do not depend on ``--jobs``.
    ``max_candidates``: above this many pools in the space, the acquisition is scored over a
    seeded sample of that many.
    """

    max_explorations: int = 40
    patience: int = 8
    kappa: float = 2.576
    batch: int = 2
    max_candidates: int = 100_000


RIBBON_DEFAULTS = RibbonDefaults()
DEFAULT_MAX_EXPLORATIONS = RIBBON_DEFAULTS.max_explorations
DEFAULT_PATIENCE = RIBBON_DEFAULTS.patience


def _screened_top(
    scenario: Scenario,
    ranked: list[RankedPool],
    policy: str,
    measurement: Measurement,
    measurer: Measurer | None,
    head: int,
) -> SearchResult:
    """``best_of_top`` with screening (see there): ``head`` pools in full, the rest screened."""
    found = screened_search(scenario, [r.pool for r in ranked], policy, measurement, measurer, head)
    history = [
        Exploration(r.pool, r.cost_per_hr, qps, r.upper_bound_qps, full)
        for r, (qps, full) in zip(ranked, found, strict=True)
    ]
    return _best("top-k", policy, history)


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
    measurer: Measurer | None = None,
) -> SearchResult:
    """RIBBON: Bayesian optimisation of simulated allowable throughput over instance counts.

    The search space is every non-empty pool within budget (one count per type, at most the
    budget's and the caps' limit). Every suggestion is a new in-budget pool, simulated (an
    exploration); the search stops after ``patience`` explorations in a row that do not beat
    the best, or at ``max_explorations`` (``bayes_search``). Each round's pools run together
    on ``measurer``'s workers, and a pool another scheme of the same comparison already
    simulated with this policy is taken from its memory.
    """
    if max_explorations < 1 or patience < 1:
        raise ConfigError(
            f"max_explorations={max_explorations!r} / patience={patience!r} is not >= 1.",
            "pass positive values.",
        )
    budget = check_budget(budget_per_hr)
    space = _candidates(scenario, budget, caps, measurement.seed)
    if len(space) == 0:
        raise budget_too_small(scenario, budget, "kairos", caps)
    measurer = measurer or Measurer()
    history: list[Exploration] = []

    def score(pools: list[Pool]) -> list[float]:
        jobs = [CapacityJob(scenario, pool, policy, measurement) for pool in pools]
        found = [res.allowable_qps for res in measurer.run(jobs)]
        for pool, qps in zip(pools, found, strict=True):
            history.append(Exploration(pool, pool.cost_per_hr(scenario.prices), qps))
        return found

    bayes_search(space, measurement.seed, max_explorations, patience, score)
    if max(e.allowable_qps for e in history) <= 0:
        # No explored pool held QoS at any rate (under fcfs a slow type in the pool fails
        # every rate, and a flat surrogate stops at its patience): fall back to the best
        # homogeneous pool, as the search always did when it found no usable pool, and
        # charge its explorations too.
        homo = best_homogeneous(
            scenario, budget, policy=policy, measurement=measurement, caps=caps, measurer=measurer
        )
        tried = {e.pool for e in history}
        return _best("ribbon", policy, history + [e for e in homo.history if e.pool not in tried])
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
    is every non-empty pool that costs no more, and it is the answer (``method="ceiling"``)
    when no explored pool holds the target. A pool is explored with one trial at the target
    (the test ``cheapest_for_rate`` applies) and scores ``-cost / ceiling cost`` (in [-1, 0))
    when it holds and ``-2 + its met fraction`` (in [-2, -1]) when it misses, so a near miss
    ranks above a far one and every pool that holds above both. The result's
    ``allowable_qps`` is the target (held in one trial), not a full search.
    """
    if max_explorations < 1 or patience < 1:
        raise ConfigError(
            f"max_explorations={max_explorations!r} / patience={patience!r} is not >= 1.",
            "pass positive values.",
        )
    measurer = measurer or Measurer()
    top = ceiling.cost_per_hr(scenario.prices)
    space = _candidates(scenario, top, None, measurement.seed)
    history: list[Exploration] = []

    def score(pools: list[Pool]) -> list[float]:
        jobs = [
            CapacityJob(scenario, pool, policy, measurement, screen_qps=target_qps)
            for pool in pools
        ]
        values = []
        for pool, res in zip(pools, measurer.run(jobs), strict=True):
            cost = pool.cost_per_hr(scenario.prices)
            held = res.allowable_qps >= target_qps
            history.append(Exploration(pool, cost, target_qps if held else 0.0, searched=False))
            met = res.trials[0].qos_met_fraction if res.trials else 0.0
            values.append(-cost / top if held else -2.0 + met)
        return values

    if len(space):
        bayes_search(space, measurement.seed, max_explorations, patience, score)
    held = [e for e in history if e.allowable_qps >= target_qps]
    if not held:
        return SearchResult(
            "ceiling", policy, ceiling, top, target_qps, len(history), tuple(history)
        )
    best = min(held, key=lambda e: e.cost_per_hr)  # the first of the cheapest
    return SearchResult(
        "ribbon", policy, best.pool, best.cost_per_hr, target_qps, len(history), tuple(history)
    )


def _candidates(
    scenario: Scenario, budget_per_hr: float, caps: Mapping[str, int] | None, seed: int
) -> PoolMatrix:
    """RIBBON's discrete space: every non-empty pool within budget (a seeded sample of
    ``max_candidates`` of them when there are more, or when they are too many to list)."""
    cap = RIBBON_DEFAULTS.max_candidates
    pools = listed_pools(scenario, budget_per_hr, caps)
    rng = np.random.default_rng(seed)
    if pools is None:
        limits = type_caps(scenario, budget_per_hr, caps)
        types = tuple(limits)
        prices = np.array([scenario.prices.price_per_hr(t) for t in types])
        high = np.array([limits[t] for t in types]) + 1
        # Uniform over the box, kept when in budget: the space bayes_opt samples from.
        draws = rng.integers(0, high, size=(20 * cap, len(types)))
        cost = draws @ prices
        keep = (cost <= budget_per_hr + COST_EPS) & (draws.sum(axis=1) > 0)
        counts = np.unique(draws[keep], axis=0)[:cap]
        return PoolMatrix(types, prices, counts, counts @ prices)
    live = pools.counts.sum(axis=1) > 0
    idx = np.flatnonzero(live)
    if len(idx) > cap:
        idx = np.sort(rng.choice(idx, size=cap, replace=False))
    return PoolMatrix(pools.types, pools.prices_per_hr, pools.counts[idx], pools.cost_per_hr[idx])


def bayes_search(
    space: PoolMatrix,
    seed: int,
    max_explorations: int,
    patience: int,
    score: Callable[[list[Pool]], list[float]],
    batch: int = RIBBON_DEFAULTS.batch,
) -> None:
    """RIBBON's loop: Bayesian optimisation of ``score`` over the pools of ``space``.

    The surrogate is the Gaussian process ``bayes_opt`` uses (Matern 5/2 kernel, alpha 1e-6,
    normalised targets, 5 optimiser restarts) and the acquisition its default upper
    confidence bound (``kappa`` 2.576). The space is discrete and small, so the acquisition is
    scored over every candidate pool in one vectorised call rather than maximised by a
    differential evolution over the process; pools already simulated are not suggested
    again. The first round is drawn at random; each later round suggests ``batch`` pools, the
    second and later ones with the earlier picks of the round believed at the surrogate's
    mean (a kriging believer), and ``score`` simulates the whole round at once (in parallel
    on the measurer's workers). The loop stops after ``patience`` explorations in a row that
    do not beat the best, at ``max_explorations``, or when the space is exhausted.
    """
    # Imported here: scikit-learn (bayes_opt's own surrogate) is slow to import, and every
    # other command can skip it.
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import Matern

    x_all = space.counts.astype(float)
    fresh = np.ones(len(x_all), dtype=bool)
    rng = np.random.default_rng(seed)
    xs: list[np.ndarray] = []
    ys: list[float] = []
    explored, best, stale = 0, -math.inf, 0
    while explored < max_explorations and stale < patience and fresh.any():
        size = min(batch, max_explorations - explored, int(fresh.sum()))
        if not xs:
            picks = [int(i) for i in rng.choice(np.flatnonzero(fresh), size=size, replace=False)]
        else:
            gp = GaussianProcessRegressor(
                kernel=Matern(nu=2.5),
                alpha=1e-6,
                normalize_y=True,
                n_restarts_optimizer=5,
                random_state=seed + len(ys),
            )
            with warnings.catch_warnings():
                # A flat or tiny history makes the kernel fit warn about its bounds.
                warnings.simplefilter("ignore")
                gp.fit(np.array(xs), np.array(ys))
                picks = _ucb_round(gp, x_all, fresh, xs, ys, size, rng)
        for i in picks:
            fresh[i] = False
        values = score([space.pool(i) for i in picks])
        for i, value in zip(picks, values, strict=True):
            xs.append(x_all[i])
            ys.append(value)
            explored += 1
            stale = 0 if value > best else stale + 1
            best = max(best, value)


def _ucb_round(
    gp: Any,
    x_all: np.ndarray,
    fresh: np.ndarray,
    xs: list[np.ndarray],
    ys: list[float],
    size: int,
    rng: np.random.Generator,
) -> list[int]:
    """``size`` pools by upper confidence bound over the fresh candidates; after each pick the
    surrogate is refitted (same kernel) with the pick believed at its mean."""
    from sklearn.base import clone

    open_ = fresh.copy()
    picks: list[int] = []
    x_fit, y_fit = list(xs), list(ys)
    model = gp
    for _ in range(size):
        idx = np.flatnonzero(open_)
        mean, std = model.predict(x_all[idx], return_std=True)
        ucb = mean + RIBBON_DEFAULTS.kappa * std
        # Ties (a flat surrogate, e.g. every pool so far scored 0) are drawn at random, as
        # the package's random search would: the first in enumeration order is one corner.
        top = np.flatnonzero(ucb >= ucb.max() - 1e-9 * max(1.0, abs(float(ucb.max()))))
        k = int(top[0]) if len(top) == 1 else int(rng.choice(top))
        i = int(idx[k])
        picks.append(i)
        open_[i] = False
        if len(picks) < size:
            x_fit.append(x_all[i])
            y_fit.append(float(mean[k]))
            model = clone(gp).set_params(kernel=gp.kernel_, optimizer=None)
            model.fit(np.array(x_fit), np.array(y_fit))
    return picks


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
    screen: int = 0,
) -> SearchResult:
    """Simulate the ``top_k`` pools by ``bound``; the best wins (a scheme's own pool search).

    ``screen`` > 0: search only the first ``screen`` pools in full, then screen the rest as
    the exact oracle does (one trial one precision step below the best rate found; only the
    pools that pass are searched in full, the others are reported with 0 q/s and
    ``searched=False``). A pool that fails that trial cannot beat the best, so the pick is the
    one the full searches give wherever pass/fail is monotone in the rate within the
    precision (the oracle's premise); each pool is still one exploration.
    """
    BOUNDS.check(bound)
    if not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k {top_k!r} is not >= 1.", "pass top_k >= 1.")
    if not isinstance(screen, int) or screen < 0:
        raise ConfigError(f"screen {screen!r} is not >= 0.", "pass screen >= 0 (0: no screen).")
    ranked = top_pools(scenario, budget_per_hr, bound, top_k, caps).ranked
    if not ranked:
        raise budget_too_small(scenario, budget_per_hr, bound, caps)
    if screen:
        return _screened_top(scenario, ranked, policy, measurement, measurer, screen)
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
