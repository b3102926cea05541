"""Step 2 of planning: the KAIROS upper bound on a pool's allowable throughput.

Everything is read from the profiles and the batch mix (``BatchMix.support``/``probs``); the
per-type quantities are computed once per scenario and the bound of many pools is one
vectorised pass. Notation follows the paper (see docs/allocator.md):

- ``v_k``: the largest batch size such that every batch up to it has a *mean* service time on
  type k within QoS (the mean reproduces the paper's published bounds; see the docs).
- ``s_k``: share of queries with batch <= ``v_k``; ``tau_k``: share of the base type's busy
  time those queries take; ``Q_k(beta)``: queries/s of one k instance serving only batches
  <= beta; ``Q_G``: queries/s of one base instance over the whole mix.

Generalisations where the paper's structure does not hold: a pool without the catalog's base
type uses its own fastest type (at the largest profiled batch) as base; when the present
non-base types can serve every query (``s = 1``) the bound is the formula's limit
``C + n_G Q_G``; non-base types that serve no query add nothing. A pool in which more than 1%
of the mix has no type whose p99 service time (with no queueing at all) meets QoS has bound 0,
the same test the simulator's capacity search applies before it simulates.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from kairos.catalog import Pool
from kairos.scenario import QOS_QUANTILE, Scenario

S_ONE_EPS = 1e-12


@dataclass(frozen=True, eq=False)
class KairosTables:
    """Per-type quantities of one scenario (type order = ``types``; classes = mix support)."""

    types: tuple[str, ...]
    base_order: np.ndarray  # type indices, fastest at the largest profiled batch first
    v_index: np.ndarray  # [T] index into the support of v_k, -1 when no batch fits QoS
    cum_share: np.ndarray  # [J] P(batch <= support[j])
    cum_busy_ms: np.ndarray  # [T, J] sum over batches <= support[j] of p_b * mean_t(b)
    ok_p99: np.ndarray  # [T, J] bool: p99 service time of the class on t is within QoS

    @property
    def q_small_qps(self) -> np.ndarray:
        """``[T, J]``: Q_t(support[j]), one instance serving only batches <= support[j]."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.cum_busy_ms > 0, 1000.0 * self.cum_share / self.cum_busy_ms, 0)

    @property
    def q_all_qps(self) -> np.ndarray:
        """``[T]``: Q_t over the whole mix."""
        return 1000.0 / self.cum_busy_ms[:, -1]


@lru_cache(maxsize=16)
def kairos_tables(scenario: Scenario, types: tuple[str, ...]) -> KairosTables:
    """Tables for ``types`` (cached per scenario object: planning reads them many times)."""
    mix = scenario.mix
    live = mix.probs > 0
    support, probs = mix.support[live], mix.probs[live]
    means = scenario.profiles.mean_table_ms(types, support)
    within = np.logical_and.accumulate(means <= scenario.qos_ms, axis=1)
    v_index = within.sum(axis=1) - 1
    p99 = np.vstack([scenario.profiles.get(t).quantile_ms(support, QOS_QUANTILE) for t in types])
    top = scenario.profiles.max_batch
    speed = [float(scenario.profiles.get(t).mean_ms(top)) for t in types]
    order = np.array(sorted(range(len(types)), key=lambda i: (speed[i], i)), dtype=np.int64)
    return KairosTables(
        types=types,
        base_order=order,
        v_index=v_index,
        cum_share=np.cumsum(probs),
        cum_busy_ms=np.cumsum(probs * means, axis=1),
        ok_p99=p99 <= scenario.qos_ms,
    )


def feasible_mask(tables: KairosTables, probs: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Pools where >= 99% of the mix has some present type with p99 service within QoS."""
    present = counts > 0
    weights = 1 << np.arange(present.shape[1], dtype=np.int64)
    pattern = present.astype(np.int64) @ weights
    uniq, inverse = np.unique(pattern, return_inverse=True)
    bits = (uniq[:, None] & weights[None, :]) > 0
    covered = (bits.astype(np.int64) @ tables.ok_p99.astype(np.int64)) > 0
    ok = covered.astype(float) @ probs >= QOS_QUANTILE - 1e-12
    return ok[inverse.reshape(-1)]


def kairos_feasible_sets(
    scenario: Scenario, types: tuple[str, ...], bits: np.ndarray
) -> np.ndarray:
    """``bits[S, T]`` type sets -> can a pool with exactly those types have a positive bound?

    Yes when 99% of the mix has a present type whose p99 service time is within QoS.
    """
    tab = kairos_tables(scenario, types)
    probs = scenario.mix.probs[scenario.mix.probs > 0]
    covered = (bits.astype(np.int64) @ tab.ok_p99.astype(np.int64)) > 0
    return covered.astype(float) @ probs >= QOS_QUANTILE - 1e-12


def kairos_bounds(scenario: Scenario, types: tuple[str, ...], counts: np.ndarray) -> np.ndarray:
    """The KAIROS bound (qps) of every row of ``counts`` (``[P, len(types)]``)."""
    tables = kairos_tables(scenario, tuple(types))
    counts = np.asarray(counts, dtype=np.int64)
    out = np.zeros(len(counts))
    probs = scenario.mix.probs[scenario.mix.probs > 0]
    feasible = feasible_mask(tables, probs, counts)
    present = counts > 0
    # The pool's base is its first present type in speed order.
    ranked_present = present[:, tables.base_order]
    base = tables.base_order[np.argmax(ranked_present, axis=1)]
    for b in np.unique(base[present.any(axis=1)]):
        rows = np.flatnonzero((base == b) & feasible)
        if rows.size:
            out[rows] = _bound_with_base(tables, int(b), counts[rows])
    return out


def _bound_with_base(tables: KairosTables, b: int, counts: np.ndarray) -> np.ndarray:
    n_g = counts[:, b].astype(float)
    q_g = float(tables.q_all_qps[b])
    others = counts > 0
    others[:, b] = False
    v_idx = np.where(others, tables.v_index[None, :], -1).max(axis=1)
    bound = n_g * q_g
    useful = v_idx >= 0
    if not useful.any():
        return bound
    vi = v_idx[useful]
    n = counts[useful].astype(float)
    n[:, b] = 0.0
    q_small = tables.q_small_qps[:, vi].T  # [rows, T]: Q_k(beta) with each row's beta
    c = (n * q_small).sum(axis=1)
    s = tables.cum_share[vi]
    tau = tables.cum_busy_ms[b, vi] / tables.cum_busy_ms[b, -1]
    ng = n_g[useful]
    bound[useful] = _two_cases(c, s, tau, ng, q_g)
    return bound


def _two_cases(
    c: np.ndarray, s: np.ndarray, tau: np.ndarray, n_g: np.ndarray, q_g: float
) -> np.ndarray:
    """The paper's two cases, with the ``s -> 1`` limit ``C + n_G Q_G`` where s is 1."""
    all_small = s >= 1.0 - S_ONE_EPS
    s_ = np.where(all_small, 0.5, s)
    tau_ = np.where(all_small, 0.5, np.minimum(tau, 1.0 - S_ONE_EPS))
    q_l = q_g * (1.0 - s_) / (1.0 - tau_)
    lam_max = c / s_
    large = lam_max * (1.0 - s_)
    base_cap = n_g * q_l
    base_bound = base_cap / (1.0 - s_)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(base_cap > 0, large / base_cap, 1.0)
    mixed = lam_max + n_g * q_g * (1.0 - u)
    out = np.where(large >= base_cap, base_bound, mixed)
    return np.where(all_small, c + n_g * q_g, out)


def kairos_bound(scenario: Scenario, pool: Pool) -> float:
    """The KAIROS upper bound (qps) on ``pool``'s allowable throughput."""
    types = pool.types
    for t in types:
        scenario.profiles.get(t)
    counts = np.array([[n for _, n in pool.counts]], dtype=np.int64)
    return float(kairos_bounds(scenario, types, counts)[0])
