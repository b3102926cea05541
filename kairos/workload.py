"""Workloads: queries with batch sizes, batch-size distributions and arrival processes.

Every distribution exposes its support and probability mass (``support``, ``probs``) and its
``mean``, so the analytic bounds of the allocator and the query generator read one object.
All randomness comes from a ``numpy.random.Generator`` passed in by the caller.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from kairos.csvio import Column, read_csv, read_numeric_csv
from kairos.errors import WorkloadError
from kairos.limits import BATCH_SIZE, MAX_TRACE_QUERIES, QUERIES, RATE_QPS, Range


@dataclass(frozen=True, slots=True)
class Query:
    """One inference request: ``batch_size`` samples, arriving at ``arrival_s``."""

    qid: int
    arrival_s: float
    batch_size: int


@dataclass(frozen=True, eq=False)
class BatchMix:
    """A discrete batch-size distribution: ``probs[i]`` is P(batch == support[i])."""

    name: str
    support: np.ndarray
    probs: np.ndarray

    def __post_init__(self) -> None:
        s = np.asarray(self.support)
        p = np.asarray(self.probs, dtype=float)
        if s.ndim != 1 or s.shape != p.shape or s.size == 0:
            raise WorkloadError(
                f"batch mix {self.name!r} has mismatched or empty support/probabilities.",
                "give one probability per batch size.",
            )
        if np.any(s <= 0) or np.any(s != np.round(s)):
            raise WorkloadError(
                f"batch mix {self.name!r} has a batch size that is not a positive integer "
                f"({s[(s <= 0) | (s != np.round(s))][0]!r}).",
                "use whole batch sizes of 1 or more.",
            )
        if np.any(p < 0) or not math.isclose(float(p.sum()), 1.0, rel_tol=1e-6):
            raise WorkloadError(
                f"batch mix {self.name!r} has negative weights or they do not sum to 1.",
                "give non-negative weights (they are normalised when loaded from CSV).",
            )

    @property
    def mean(self) -> float:
        return float(np.dot(self.support, self.probs))

    @property
    def max_batch(self) -> int:
        return int(self.support[self.probs > 0].max())

    def quantile(self, q: float) -> int:
        cdf = np.cumsum(self.probs)
        return int(self.support[min(int(np.searchsorted(cdf, q - 1e-12)), len(cdf) - 1)])

    def share_at_most(self, batch: float) -> float:
        """P(batch size <= ``batch``)."""
        return float(self.probs[self.support <= batch].sum())

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(self.support, size=n, p=self.probs).astype(np.int64)


def _lognormal_bin_mass(edges: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    # Imported here: scipy.special costs about 0.4 s of CPU to import, and most processes
    # that import this module (every worker, the load generator) never build this mix.
    from scipy.special import ndtr

    cdf = ndtr((np.log(edges) - mu) / sigma)
    return np.diff(cdf)


def production_mix() -> BatchMix:
    """The production batch-size mix of the KAIROS and DeepRecSys work (exact mass).

    Procedure: x ~ LogNormal(5.1, 0.2); with probability 8/99 x := U{1..99}, with 22/99
    x := U{200..599}, with 5/99 x := U{600..999}; otherwise keep x if 100 <= x <= 200, else
    x := U{190..199}; batch = x rounded up to a multiple of 10. The mass below is that
    procedure's exact distribution (mean about 244, p99 about 920).
    """
    support, probs = _production_mass()
    return BatchMix("production", support.copy(), probs.copy())


# Computed once per process: a Scenario without a mix asks for it each time (hundreds of times
# in the test suite, about 3 ms each). Callers copy the arrays.
@cache
def _production_mass() -> tuple[np.ndarray, np.ndarray]:
    mass: dict[int, float] = {}

    def add_uniform(lo: int, hi: int, weight: float) -> None:
        values = np.arange(lo, hi + 1)
        rounded = -(-values // 10) * 10
        for b, c in zip(*np.unique(rounded, return_counts=True), strict=True):
            mass[int(b)] = mass.get(int(b), 0.0) + weight * c / len(values)

    add_uniform(1, 99, 8 / 99)
    add_uniform(200, 599, 22 / 99)
    add_uniform(600, 999, 5 / 99)
    keep = 64 / 99
    mu, sigma = 5.1, 0.2
    edges = np.arange(100, 201, 10, dtype=float)  # (100,110], ..., (190,200]
    inside = _lognormal_bin_mass(edges, mu, sigma)
    for b, m in zip(edges[1:].astype(int), inside, strict=True):
        mass[int(b)] = mass.get(int(b), 0.0) + keep * float(m)
    outside = 1.0 - float(inside.sum())
    add_uniform(190, 199, keep * outside)
    support = np.array(sorted(mass), dtype=np.int64)
    probs = np.array([mass[int(b)] for b in support])
    return support, probs / probs.sum()


def fixed_mix(batch_size: int) -> BatchMix:
    if batch_size <= 0:
        raise WorkloadError(
            f"fixed batch size {batch_size!r} is not positive.", "use fixed:N with N >= 1."
        )
    return BatchMix(f"fixed:{batch_size}", np.array([batch_size]), np.array([1.0]))


MIX_COLUMNS = (Column("batch_size", BATCH_SIZE), Column("weight", Range("weight", 0, 1e300)))


def load_mix(path: str | Path) -> BatchMix:
    """An empirical mix from a CSV ``batch_size,weight``.

    Weights are normalised; rows with the same batch size add their weights (a histogram
    may list a size more than once).
    """
    weights: dict[int, float] = {}
    for _, (b, w) in read_csv(path, "batch-mix file", MIX_COLUMNS, WorkloadError):
        weights[b] = weights.get(b, 0.0) + w
    total = sum(weights.values())
    if not total > 0 or not math.isfinite(total):
        raise WorkloadError(
            f"batch-mix file {str(path)!r} has weights summing to {total:g}.",
            "give at least one positive weight (and finite ones).",
        )
    support = np.array(sorted(weights), dtype=np.int64)
    probs = np.array([weights[int(b)] / total for b in support])
    return BatchMix(Path(path).stem, support, probs)


def parse_mix(spec: str) -> BatchMix:
    """``production``, ``fixed:N`` or a path to a ``batch_size,weight`` CSV."""
    if spec == "production":
        return production_mix()
    if spec.startswith("fixed:"):
        text = spec.removeprefix("fixed:")
        try:
            n = int(text)
        except ValueError:
            raise WorkloadError(
                f"batch mix {spec!r} is not fixed:N with N a whole number.",
                "write e.g. fixed:100.",
            ) from None
        if not BATCH_SIZE.contains(n):
            raise WorkloadError(
                f"batch mix {spec!r}: {n} is outside {BATCH_SIZE.describe()}.",
                "write fixed:N with N a batch size such as 100.",
            )
        return fixed_mix(n)
    return load_mix(spec)


def check_rate_qps(rate_qps: float) -> float:
    return RATE_QPS.check(rate_qps)


def check_batches_within(largest: int, what: str, max_batch: int, whose: str) -> None:
    """The one rule for batch sizes above the profiled grid: they are refused.

    ``largest`` is the biggest batch in ``what`` (a mix or a trace); ``max_batch`` is the
    largest batch profiled on every type of the model, the same limit the live router
    enforces with a 400. So a simulation never extrapolates a profile, and a load generator
    never sends a query the router must refuse (docs/limits.md).
    """
    if largest > max_batch:
        raise WorkloadError(
            f"{what} has batch sizes up to {largest}, above the largest batch {max_batch} "
            f"profiled for {whose}.",
            f"use batch sizes of at most {max_batch} (split larger queries), or pass "
            "--profiles with measurements of larger batches.",
        )


@dataclass(frozen=True, eq=False)
class QueryStream:
    """Arrival times (seconds, non-decreasing) and batch sizes of a run's queries."""

    arrival_s: np.ndarray
    batch_size: np.ndarray

    def __len__(self) -> int:
        return len(self.arrival_s)

    def queries(self) -> list[Query]:
        times = self.arrival_s.tolist()
        batches = self.batch_size.tolist()
        return [Query(i, times[i], batches[i]) for i in range(len(times))]


def poisson_stream(rate_qps: float, n: int, mix: BatchMix, rng: np.random.Generator) -> QueryStream:
    """``n`` Poisson arrivals (exponential gaps in continuous time) with batches from ``mix``."""
    check_rate_qps(rate_qps)
    QUERIES.check(n)
    gaps = rng.exponential(1.0 / rate_qps, size=n)
    return QueryStream(np.cumsum(gaps), mix.sample(n, rng))


TRACE_COLUMNS = (
    Column("arrival_s", Range("arrival_s", 0, 1e9, "s")),
    Column("batch_size", BATCH_SIZE, optional=True),
)


def load_trace(path: str | Path, mix: BatchMix | None = None, seed: int = 0) -> QueryStream:
    """Replay a trace CSV ``arrival_s,batch_size`` (rows sorted by arrival; at most
    ``MAX_TRACE_QUERIES`` rows, so memory stays bounded).

    A trace of arrival times only (a header without ``batch_size``) takes its batches from
    ``mix``, drawn with ``seed``; without a mix it is refused.
    """
    # The common case, a well-formed numeric file, is parsed by numpy in one pass per chunk
    # (docs/limits.md: 5.2M rows in 3-5 s, against 31 s row by row). Anything it does
    # not take, or a trace that fails a check here, is read again row by row below, which
    # names the first line at fault exactly as it always has.
    fast = read_numeric_csv(path, TRACE_COLUMNS, max_rows=MAX_TRACE_QUERIES)
    if fast is not None:
        arrival, batch = fast
        assert arrival is not None  # a required column
        in_order = bool(np.all(arrival[1:] >= arrival[:-1]))
        if in_order and batch is not None:
            return QueryStream(arrival, batch)
        if in_order and mix is not None:
            return QueryStream(arrival, mix.sample(len(arrival), np.random.default_rng(seed)))
    times = array("d")
    batches = array("q")
    rows = read_csv(path, "trace file", TRACE_COLUMNS, WorkloadError, max_rows=MAX_TRACE_QUERIES)
    last = -1.0
    for line, (t, b) in rows:
        if t < last:
            raise WorkloadError(
                f"{path} line {line}: arrival_s {t:g} is earlier than the previous row's.",
                "sort the trace by arrival_s.",
            )
        last = t
        times.append(t)
        if b is not None:
            batches.append(b)
        elif mix is None:
            raise WorkloadError(
                f"trace file {path} has arrival times but no batch_size column.",
                "add a batch_size column, or pass --batch-mix to draw the batches from.",
            )
    arrival = np.frombuffer(times, dtype=np.float64).copy()
    if len(batches) == len(times):
        return QueryStream(arrival, np.frombuffer(batches, dtype=np.int64).copy())
    assert mix is not None  # checked on the first row
    return QueryStream(arrival, mix.sample(len(arrival), np.random.default_rng(seed)))
