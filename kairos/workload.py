"""Workloads: queries with batch sizes, batch-size distributions and arrival processes.

Every distribution exposes its support and probability mass (``support``, ``probs``) and its
``mean``, so the analytic bounds of the allocator and the query generator read one object.
All randomness comes from a ``numpy.random.Generator`` passed in by the caller.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import ndtr

from kairos.errors import ConfigError, WorkloadError


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
    cdf = ndtr((np.log(edges) - mu) / sigma)
    return np.diff(cdf)


def production_mix() -> BatchMix:
    """The production batch-size mix of the KAIROS and DeepRecSys work (exact mass).

    Procedure: x ~ LogNormal(5.1, 0.2); with probability 8/99 x := U{1..99}, with 22/99
    x := U{200..599}, with 5/99 x := U{600..999}; otherwise keep x if 100 <= x <= 200, else
    x := U{190..199}; batch = x rounded up to a multiple of 10. The mass below is that
    procedure's exact distribution (mean about 244, p99 about 920).
    """
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
    return BatchMix("production", support, probs / probs.sum())


def fixed_mix(batch_size: int) -> BatchMix:
    if batch_size <= 0:
        raise WorkloadError(
            f"fixed batch size {batch_size!r} is not positive.", "use fixed:N with N >= 1."
        )
    return BatchMix(f"fixed:{batch_size}", np.array([batch_size]), np.array([1.0]))


def load_mix(path: str | Path) -> BatchMix:
    """An empirical mix from a CSV ``batch_size,weight`` (weights are normalised)."""
    p = Path(path)
    if not p.is_file():
        raise WorkloadError(
            f"batch-mix file {str(p)!r} does not exist.",
            "pass --batch-mix production, fixed:N, or a CSV with columns batch_size,weight.",
        )
    weights: dict[int, float] = {}
    with open(p, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if not {"batch_size", "weight"} <= set(reader.fieldnames or []):
            raise WorkloadError(
                f"batch-mix file {str(p)!r} has columns {reader.fieldnames}.",
                "write a CSV header 'batch_size,weight'.",
            )
        for line_no, row in enumerate(reader, start=2):
            try:
                b = float(row["batch_size"])
                w = float(row["weight"])
            except (TypeError, ValueError):
                b, w = -1.0, -1.0
            if b <= 0 or b != int(b) or not math.isfinite(w) or w < 0:
                raise WorkloadError(
                    f"{p} line {line_no}: batch_size {row['batch_size']!r} / weight "
                    f"{row['weight']!r} is invalid.",
                    "use positive whole batch sizes and non-negative weights.",
                )
            weights[int(b)] = weights.get(int(b), 0.0) + w
    total = sum(weights.values())
    if total <= 0:
        raise WorkloadError(f"batch-mix file {str(p)!r} has no positive weight.", "add rows.")
    support = np.array(sorted(weights), dtype=np.int64)
    probs = np.array([weights[int(b)] / total for b in support])
    return BatchMix(p.stem, support, probs)


def parse_mix(spec: str) -> BatchMix:
    """``production``, ``fixed:N`` or a path to a ``batch_size,weight`` CSV."""
    if spec == "production":
        return production_mix()
    if spec.startswith("fixed:"):
        try:
            n = int(spec.removeprefix("fixed:"))
        except ValueError:
            raise WorkloadError(
                f"batch mix {spec!r} is not fixed:N with N an integer.", "write e.g. fixed:100."
            ) from None
        return fixed_mix(n)
    return load_mix(spec)


def check_rate_qps(rate_qps: float) -> float:
    if not math.isfinite(rate_qps) or rate_qps <= 0:
        raise ConfigError(
            f"arrival rate {rate_qps!r} qps is not a positive number.",
            "pass --rate-qps greater than 0, for example 50.",
        )
    return float(rate_qps)


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
    if n <= 0:
        raise ConfigError(f"query count {n!r} is not positive.", "pass --queries >= 1.")
    gaps = rng.exponential(1.0 / rate_qps, size=n)
    return QueryStream(np.cumsum(gaps), mix.sample(n, rng))


def load_trace(path: str | Path) -> QueryStream:
    """Replay a trace CSV ``arrival_s,batch_size`` (rows sorted by arrival)."""
    p = Path(path)
    if not p.is_file():
        raise WorkloadError(
            f"trace file {str(p)!r} does not exist.",
            "pass a CSV with columns arrival_s,batch_size.",
        )
    times: list[float] = []
    batches: list[int] = []
    with open(p, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if not {"arrival_s", "batch_size"} <= set(reader.fieldnames or []):
            raise WorkloadError(
                f"trace file {str(p)!r} has columns {reader.fieldnames}.",
                "write a CSV header 'arrival_s,batch_size'.",
            )
        for line_no, row in enumerate(reader, start=2):
            try:
                t = float(row["arrival_s"])
                b = float(row["batch_size"])
            except (TypeError, ValueError):
                t, b = -1.0, -1.0
            if not math.isfinite(t) or t < 0 or b <= 0 or b != int(b):
                raise WorkloadError(
                    f"{p} line {line_no}: arrival_s {row['arrival_s']!r} / batch_size "
                    f"{row['batch_size']!r} is invalid.",
                    "use non-negative arrival times in seconds and positive whole batch sizes.",
                )
            if times and t < times[-1]:
                raise WorkloadError(
                    f"{p} line {line_no}: arrival_s {t} is earlier than the previous row.",
                    "sort the trace by arrival_s.",
                )
            times.append(t)
            batches.append(int(b))
    if not times:
        raise WorkloadError(f"trace file {str(p)!r} has no rows.", "add arrival rows.")
    return QueryStream(np.array(times), np.array(batches, dtype=np.int64))
