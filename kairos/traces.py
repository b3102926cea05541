"""Synthetic traces a user recognises, and writing traces to CSV.

Each shape is a rate curve, one rate per second (``RateCurve``), turned into arrivals by a
non-homogeneous Poisson process: within a second the rate is constant, so that second's count
is Poisson(rate) and its arrivals are uniform within it (exact for a piecewise-constant rate,
and one vectorised pass for millions of queries). Batches come from a ``BatchMix``. Everything
random comes from one seed, so a shape, its settings and a seed name one trace.

Shapes (``SHAPES``):
  diurnal    trough -> peak -> trough over ``period_s`` (a cosine), with per-minute noise.
  step       the trough, then the peak from ``at_s`` on.
  spike      the trough, with ``spike_s`` seconds at the peak from ``at_s``.
  on-off     idle (the trough, often 0) for ``off_s``, then a burst near the peak for
             ``on_s``, repeated; each burst's height is drawn between 80% and 100% of the peak.
  multiscale a slow drift between trough and peak (a new level every ``period_s``, linear in
             between), minute-scale swings (``noise``), and second-scale bursts (2-3x for a
             few seconds, about one a minute): real traffic moves at several scales at once.

Loading a trace is ``kairos.workload.load_trace``; the cap on its size is
``kairos.limits.MAX_TRACE_QUERIES`` (docs/limits.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kairos.errors import WorkloadError
from kairos.limits import (
    MAX_TRACE_QUERIES,
    NOISE,
    PERIOD_S,
    RATE_QPS,
    TRACE_DURATION_S,
    TROUGH_QPS,
)
from kairos.workload import BatchMix, QueryStream


@dataclass(frozen=True)
class TraceSettings:
    """The knobs of every shape; each shape reads those it needs (the CLI reads these
    defaults). ``at_s``, ``on_s`` and ``off_s`` of None mean: half the duration, 60 s, 300 s."""

    duration_s: float = 3600.0
    peak_qps: float = 60.0
    trough_qps: float = 20.0
    period_s: float | None = None  # diurnal: the whole duration; multiscale: 900 s
    noise: float = 0.1  # relative std of the per-minute swings
    at_s: float | None = None
    spike_s: float = 60.0
    on_s: float = 60.0
    off_s: float = 300.0

    def __post_init__(self) -> None:
        TRACE_DURATION_S.check(self.duration_s, "--duration-s", WorkloadError)
        RATE_QPS.check(self.peak_qps, "--peak-qps", WorkloadError)
        TROUGH_QPS.check(self.trough_qps, "--trough-qps", WorkloadError)
        NOISE.check(self.noise, "--noise", WorkloadError)
        if self.period_s is not None:
            PERIOD_S.check(self.period_s, "--period-s", WorkloadError)
        for name in ("spike_s", "on_s", "off_s"):
            TRACE_DURATION_S.check(
                getattr(self, name), f"--{name.replace('_', '-')}", WorkloadError
            )
        if self.at_s is not None and not (0 <= self.at_s < self.duration_s):
            raise WorkloadError(
                f"--at-s {self.at_s:g} is not within the trace (0 to {self.duration_s:g} s).",
                "pass --at-s between 0 and --duration-s.",
            )
        if self.trough_qps > self.peak_qps:
            raise WorkloadError(
                f"--trough-qps {self.trough_qps:g} is above --peak-qps {self.peak_qps:g}.",
                "pass a trough at or below the peak.",
            )

    @property
    def seconds(self) -> int:
        return max(1, math.ceil(self.duration_s))


@dataclass(frozen=True, eq=False)
class RateCurve:
    """``rates_qps[k]``: the arrival rate during second ``k`` of the trace."""

    name: str
    rates_qps: np.ndarray

    @property
    def expected_queries(self) -> float:
        return float(self.rates_qps.sum())

    @property
    def peak_qps(self) -> float:
        return float(self.rates_qps.max())


def _minute_noise(s: TraceSettings, rng: np.random.Generator) -> np.ndarray:
    """A multiplicative factor per second, constant over each minute, mean 1, never below 0."""
    minutes = math.ceil(s.seconds / 60)
    per_minute = np.maximum(1.0 + s.noise * rng.standard_normal(minutes), 0.0)
    return np.repeat(per_minute, 60)[: s.seconds]


def diurnal(s: TraceSettings, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(s.seconds) + 0.5
    period = s.period_s or s.duration_s
    wave = 0.5 * (1.0 - np.cos(2.0 * math.pi * t / period))  # 0 at the start, 1 mid-period
    return (s.trough_qps + (s.peak_qps - s.trough_qps) * wave) * _minute_noise(s, rng)


def step(s: TraceSettings, rng: np.random.Generator) -> np.ndarray:
    at = s.at_s if s.at_s is not None else s.duration_s / 2
    t = np.arange(s.seconds)
    return np.where(t >= at, s.peak_qps, s.trough_qps).astype(float)


def spike(s: TraceSettings, rng: np.random.Generator) -> np.ndarray:
    at = s.at_s if s.at_s is not None else s.duration_s / 2
    t = np.arange(s.seconds)
    inside = (t >= at) & (t < at + s.spike_s)
    return np.where(inside, s.peak_qps, s.trough_qps).astype(float)


def on_off(s: TraceSettings, rng: np.random.Generator) -> np.ndarray:
    cycle = s.off_s + s.on_s
    t = np.arange(s.seconds)
    k = (t // cycle).astype(np.int64)
    on = (t - k * cycle) >= s.off_s
    heights = rng.uniform(0.8, 1.0, int(k[-1]) + 1) * s.peak_qps
    return np.where(on, heights[k], s.trough_qps)


def multiscale(s: TraceSettings, rng: np.random.Generator) -> np.ndarray:
    period = s.period_s or 900.0
    t = np.arange(s.seconds, dtype=float)
    knots = np.arange(0.0, s.seconds + period, period)
    levels = rng.uniform(s.trough_qps, s.peak_qps, len(knots))
    drift = np.interp(t, knots, levels)
    swings = _minute_noise(s, rng)
    # Second-scale bursts: about one a minute, 2-5 s long, 2-3x the rate.
    bursts = np.ones(s.seconds)
    starts = np.flatnonzero(rng.random(s.seconds) < 1.0 / 60.0)
    lengths = rng.integers(2, 6, len(starts))
    heights = rng.uniform(2.0, 3.0, len(starts))
    for b, n, h in zip(starts.tolist(), lengths.tolist(), heights.tolist(), strict=True):
        bursts[b : b + n] = h
    return np.minimum(drift * swings * bursts, 3.0 * s.peak_qps)


SHAPES: dict[str, Callable[[TraceSettings, np.random.Generator], np.ndarray]] = {
    "diurnal": diurnal,
    "step": step,
    "spike": spike,
    "on-off": on_off,
    "multiscale": multiscale,
}


def rate_curve(shape: str, settings: TraceSettings, rng: np.random.Generator) -> RateCurve:
    make = SHAPES.get(shape)
    if make is None:
        raise WorkloadError(
            f"trace shape {shape!r} is not known.", f"pick one of {', '.join(SHAPES)}."
        )
    return RateCurve(shape, make(settings, rng))


def arrivals(curve: RateCurve, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted arrival times of a Poisson process with ``curve``'s per-second rates."""
    expected = curve.expected_queries
    if expected > MAX_TRACE_QUERIES:
        raise WorkloadError(
            f"the {curve.name} trace would hold about {expected:,.0f} queries, above the cap "
            f"of {MAX_TRACE_QUERIES:,} (docs/limits.md).",
            "lower --peak-qps / --trough-qps or --duration-s.",
        )
    counts = rng.poisson(curve.rates_qps)
    seconds = np.repeat(np.arange(len(counts), dtype=float), counts)
    times = np.sort(seconds + rng.random(len(seconds)))  # sorted within each second
    return times[times < duration_s]


def synthetic_trace(
    shape: str, settings: TraceSettings, mix: BatchMix, seed: int = 0
) -> QueryStream:
    """A ``shape`` trace from ``seed``: rate curve, arrivals and batches from one seed."""
    curve_rng, arrival_rng, batch_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    curve = rate_curve(shape, settings, curve_rng)
    times = arrivals(curve, settings.duration_s, arrival_rng)
    if len(times) == 0:
        raise WorkloadError(
            f"the {shape} trace drew no query in {settings.duration_s:g} s.",
            "raise --peak-qps / --trough-qps or --duration-s.",
        )
    return QueryStream(times, mix.sample(len(times), batch_rng))


def write_trace(stream: QueryStream, path: str | Path) -> Path:
    """Write ``arrival_s,batch_size`` rows (microsecond times), in chunks to bound memory."""
    p = Path(path)
    chunk = 1 << 18
    with open(p, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("arrival_s,batch_size\n")
        for lo in range(0, len(stream), chunk):
            times = stream.arrival_s[lo : lo + chunk].tolist()
            batches = stream.batch_size[lo : lo + chunk].tolist()
            fh.write("".join(f"{t:.6f},{b}\n" for t, b in zip(times, batches, strict=True)))
    return p
