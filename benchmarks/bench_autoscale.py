"""Autoscalers judged in dollars at QoS (issue 22): every autoscaler of the registry replays the
same synthetic trace in the simulator, and the issue's "done when" ratios are printed in one run.

For each model and shape: the trace (from ``--seed``), then one replay per autoscaler
(``kairos.sim.timeline``, the default cloud: 90 s boots, per-second billing, 60 s minimum),
each given the trace's batch mix where it plans with hindsight. One table per (model, shape):
cost ($), share of queries within QoS (truncated, so 99.95% never prints as 100%), scale
actions, CPU seconds. Then the ratios: kairos cost over ray-serve, skyserve (with their shares
beside: a ratio means "cheaper at the same QoS" only where they hold the same share), over the
best static pool (target <= 0.8) and over the hindsight oracle (target <= 1.2), and kairos's
share (target >= 99% on diurnal and on-off).

Shapes (``SHAPES``; ``kairos.traces``):
  diurnal     trough -> peak (3x) -> trough over the whole duration (one cycle, 2 h by
              default), 10% per-minute noise.
  on-off      silence, then bursts of 80-100% of the peak: ``on_s`` 120 s every 360 s. The
              trace is turned to open with a burst, so the first decision sees bursty traffic
              as the service's recent past; from silence, the first burst lands before any
              instance a reactive autoscaler asks for has booted, and is lost by every one.
  multiscale  a slow drift between trough and peak (a new level every 900 s), 10% minute
              swings and second-scale 2-3x bursts: the stand-in for a production trace (no
              public one can be fetched here).

Rates: rm2 40-120 q/s, dien 60-180 q/s, times ``--rate-scale`` (default 1). The production
mix's large batches need a g4dn.xlarge in every pool, a fixed $0.53/h, so at low rates a
pool's cost hardly follows the rate and no autoscaler can save much; at these rates the
cheapest pools run from one GPU and a few r5n.large to one GPU and a dozen, so there are
steps to take. ``--rate-scale 3`` shows the same trace shapes for a larger service.
Durations (``DURATION_S``, ``--duration-s`` for all shapes): the diurnal cycle 2 h, on-off
and multiscale 30 min; the whole benchmark is about 900 s of CPU (``--jobs 2``), about 700 s
without ``static-peak`` and ``static-mean``, which no target reads.

The share a ratio is judged at: kairos's cost over a homogeneous autoscaler's means "cheaper at
the same QoS" only where that autoscaler holds the target share too; where it does not, the
line says by how many points it misses the target, next to the ratio.

    python benchmarks/bench_autoscale.py [--models dien,rm2] [--shapes diurnal,on-off,multiscale]
        [--autoscalers ...] [--duration-s S] [--seed 0] [--policy kairos] [--rate-scale 1]
        [--jobs 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kairos.control.autoscale import AUTOSCALERS, AutoscaleContext
from kairos.scenario import Scenario
from kairos.sim.autoscale import CloudSettings
from kairos.sim.timeline import TimelineSettings, percent_down, simulate_timeline
from kairos.traces import TraceSettings, synthetic_trace
from kairos.workload import QueryStream

RATES_QPS = {"dien": (60.0, 180.0), "rm2": (40.0, 120.0)}  # (trough, peak)
DURATION_S = {"diurnal": 2 * 3600.0, "on-off": 1800.0, "multiscale": 1800.0}
SHAPES = ("diurnal", "on-off", "multiscale")
ORDER = ("kairos", "static-peak", "static-mean", "static-best", "oracle", "ray-serve", "skyserve")
ON_S, OFF_S = 120.0, 240.0
MULTISCALE_PERIOD_S = 900.0
# The "done when": kairos at most these multiples of each baseline's cost.
TARGETS = {"ray-serve": 0.6, "skyserve": 0.6, "static-best": 0.8, "oracle": 1.2}
# Baselines compared at the same share: a ratio against them counts only where they hold it.
SAME_SHARE = ("ray-serve", "skyserve")
QOS_TARGET = 0.99


@dataclass(frozen=True)
class Row:
    model: str
    shape: str
    autoscaler: str
    queries: int
    cost_dollars: float
    qos_share: float
    scale_actions: int
    cpu_s: float
    wall_s: float


def trace_for(
    model: str, shape: str, duration_s: float, seed: int, rate_scale: float = 1.0
) -> QueryStream:
    trough, peak = (rate_scale * r for r in RATES_QPS[model])
    mix = Scenario.build(model).mix
    if shape == "diurnal":
        s = TraceSettings(duration_s=duration_s, peak_qps=peak, trough_qps=trough)
    elif shape == "on-off":
        s = TraceSettings(
            duration_s=duration_s, peak_qps=peak, trough_qps=0.0, on_s=ON_S, off_s=OFF_S
        )
    else:
        s = TraceSettings(
            duration_s=duration_s,
            peak_qps=peak,
            trough_qps=trough,
            period_s=MULTISCALE_PERIOD_S,
        )
    stream = synthetic_trace(shape, s, mix, seed)
    if shape != "on-off":
        return stream
    # Turned by one silence, so that the trace opens with a burst (see the module docstring).
    turned = (stream.arrival_s - OFF_S) % duration_s
    order = np.argsort(turned, kind="stable")
    return QueryStream(turned[order], stream.batch_size[order])


# model, shape, autoscaler, duration, seed, policy, rate scale
Task = tuple[str, str, str, float, int, str, float]


def replay(task: Task) -> Row:
    model, shape, name, duration_s, seed, policy, rate_scale = task
    wall0, cpu0 = time.perf_counter(), time.process_time()
    scenario = Scenario.build(model)
    stream = trace_for(model, shape, duration_s, seed, rate_scale)
    cloud = CloudSettings()
    ctx = AutoscaleContext(scenario, policy, cloud, None, stream)
    scaler = AUTOSCALERS.get(name)(ctx)
    res = simulate_timeline(
        scenario, scaler, policy, stream, cloud=cloud, settings=TimelineSettings(), seed=seed
    )
    return Row(
        model,
        shape,
        name,
        res.queries,
        res.cost_dollars,
        res.qos_share,
        res.scale_actions,
        time.process_time() - cpu0,
        time.perf_counter() - wall0,
    )


def ratios(rows: list[Row]) -> list[dict[str, Any]]:
    out = []
    by = {(r.model, r.shape, r.autoscaler): r for r in rows}
    for model, shape in dict.fromkeys((r.model, r.shape) for r in rows):
        k = by.get((model, shape, "kairos"))
        if k is None:
            continue
        entry: dict[str, Any] = {"model": model, "shape": shape, "kairos_share": k.qos_share}
        entry["kairos_share_ok"] = k.qos_share >= QOS_TARGET
        for base, target in TARGETS.items():
            b = by.get((model, shape, base))
            if b is None:
                continue
            entry[base] = {
                "ratio": k.cost_dollars / b.cost_dollars,
                "target": target,
                "met": k.cost_dollars / b.cost_dollars <= target,
                "share": b.qos_share,
                # Points of QoS share the baseline falls short of kairos's (negative: above).
                "share_gap_points": 100.0 * (k.qos_share - b.qos_share),
                # Points the baseline falls short of the target share (0: it holds it).
                "misses_target_points": max(0.0, 100.0 * (QOS_TARGET - b.qos_share)),
            }
        out.append(entry)
    return out


def print_tables(rows: list[Row], table: list[dict[str, Any]]) -> None:
    for model, shape in dict.fromkeys((r.model, r.shape) for r in rows):
        group = [r for r in rows if (r.model, r.shape) == (model, shape)]
        print(f"\n{model}, {shape}: {group[0].queries:,} queries")
        print(f"  {'autoscaler':<12} {'cost $':>9} {'in QoS':>8} {'actions':>8} {'cpu s':>7}")
        for r in group:
            share = percent_down(r.qos_share, 2)
            print(
                f"  {r.autoscaler:<12} {r.cost_dollars:>9.3f} {share:>8} "
                f"{r.scale_actions:>8} {r.cpu_s:>7.1f}"
            )
    print("\nkairos cost / baseline's (target), baseline's share; kairos's share")
    for e in table:
        verdict = "met" if e["kairos_share_ok"] else "MISSED"
        if e["shape"] not in ("diurnal", "on-off"):
            verdict += ", no target here"
        share = percent_down(e["kairos_share"], 2)
        parts = [f"{e['model']}/{e['shape']}: kairos {share} (>= 99%: {verdict})"]
        for base in TARGETS:
            if base in e:
                b = e[base]
                mark = "met" if b["met"] else "MISSED"
                if base in SAME_SHARE and b["misses_target_points"] > 0:
                    mark = f"{base} misses 99% by {b['misses_target_points']:.2f} points"
                parts.append(
                    f"/{base} {b['ratio']:.2f} (<= {b['target']}: {mark}; "
                    f"{base} {percent_down(b['share'], 2)})"
                )
        print("  " + "\n    ".join(parts))


class _Serial:
    """``map`` in this process (``--jobs 1``), with the executor's context-manager shape."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn: Callable[[Task], Row], tasks: list[Task]) -> Iterator[Row]:
        return map(fn, tasks)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="dien,rm2")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--autoscalers", default=",".join(ORDER))
    ap.add_argument("--duration-s", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--policy", default="kairos")
    ap.add_argument("--rate-scale", type=float, default=1.0)
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    shapes = [s for s in args.shapes.split(",") if s]
    names = [n for n in args.autoscalers.split(",") if n]
    for m in models:
        if m not in RATES_QPS:
            ap.error(f"--models: {m!r} has no rates here (known: {', '.join(RATES_QPS)})")
    for s in shapes:
        if s not in SHAPES:
            ap.error(f"--shapes: {s!r} is not one of {', '.join(SHAPES)}")
    for n in names:
        AUTOSCALERS.check(n)
    if not args.rate_scale > 0 or args.rate_scale == float("inf"):
        ap.error(
            f"--rate-scale: {args.rate_scale!r} must be a positive number (1: the rates given)"
        )
    # Shape by shape (the diurnal first: the targets are there), models side by side.
    tasks = [
        (m, s, n, args.duration_s or DURATION_S[s], args.seed, args.policy, args.rate_scale)
        for s in shapes
        for m in models
        for n in names
    ]
    wall0 = time.perf_counter()
    rows: list[Row] = []
    with ProcessPoolExecutor(args.jobs) if args.jobs > 1 else _Serial() as pool:
        for row in pool.map(replay, tasks):
            rows.append(row)
            # Each row as it lands, on stderr: a long run shows progress and keeps what it did.
            print(json.dumps(asdict(row)), file=sys.stderr, flush=True)
    wall = time.perf_counter() - wall0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    cpu = children.ru_utime + children.ru_stime + own.ru_utime + own.ru_stime
    table = ratios(rows)
    if args.json:
        out = {
            "rows": [asdict(r) for r in rows],
            "ratios": table,
            "wall_s": wall,
            "cpu_s": cpu,
            "policy": args.policy,
            "rate_scale": args.rate_scale,
        }
        json.dump(out, sys.stdout, indent=2)
        print()
    else:
        print_tables(rows, table)
        print(f"\nwall {wall:.0f} s, CPU {cpu:.0f} s, routing policy {args.policy!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
