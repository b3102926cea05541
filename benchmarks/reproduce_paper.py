"""Reproduce the KAIROS paper's headline on the built-in data, over several seeds.

All 5 models at $2.5/h with their default QoS targets. For each model and seed it runs every
comparison scheme (``kairos.compare``); then, per model, it prints the mean and the spread
(min-max over seeds) of: kairos / homogeneous, kairos / each rival (ribbon, drs, clockwork),
kairos / the exact oracle, kairos-verified (the default ``kairos plan``) / the exact oracle,
kairos / its pool's KAIROS and fluid bounds, and the oracle's pools simulated against the pools
within budget. Every figure is measured in this run with the simulator's allowable-throughput
search, one seed for all schemes of a comparison.

Targets (from the issues): kairos >= 1.5 x homogeneous and >= every competitor on every model,
kairos >= 0.95 x oracle. Independent re-simulation of the paper's artifact: kairos/homogeneous
about 2.5 (rm2), 1.6 (wnd), 1.65 (mtwnd), 1.8 (dien), 2.1 (ncf).

Usage: python benchmarks/reproduce_paper.py [--seeds 0,1,2] [--models rm2,wnd] [--jobs N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from kairos import allocator
from kairos.compare import COMPARE_DEFAULTS, CompareSettings, Comparison, compare
from kairos.scenario import Scenario
from kairos.sim.capacity import Measurer
from kairos.sim.parallel import Parallelism, make_executor

RIVALS = ("homogeneous", "ribbon", "drs", "clockwork")
MODELS = ("rm2", "wnd", "mtwnd", "dien", "ncf")


def ratios(scenario: Scenario, c: Comparison) -> dict[str, float]:
    k = c.scheme("kairos")
    kb = allocator.kairos_bound(scenario, k.pool)
    oracle = c.scheme("oracle")
    out = {f"kairos/{r}": c.ratio("kairos", r) for r in RIVALS}
    out["kairos/oracle"] = c.ratio("kairos", "oracle")
    out["verified/oracle"] = c.ratio("kairos-verified", "oracle")
    out["kairos/KAIROS-bound"] = k.allowable_qps / kb if kb else 0.0
    out["kairos/fluid-bound"] = k.allowable_qps / k.upper_bound_qps if k.upper_bound_qps else 0.0
    out["oracle simulated"] = float(oracle.explorations)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="KAIROS paper headline on the built-in data")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--budget-per-hr", type=float, default=2.5)
    ap.add_argument("--queries", type=int, default=COMPARE_DEFAULTS.queries)
    ap.add_argument("--precision", type=float, default=COMPARE_DEFAULTS.precision)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--jobs", type=int, default=None, help="default: one per CPU core")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    summary: dict[str, dict[str, list[float]]] = {}
    within: dict[str, float] = {}
    with make_executor(Parallelism(jobs=args.jobs)) as executor:
        for model in args.models.split(","):
            scenario = Scenario.build(model)
            within[model] = allocator.count_pools(scenario, args.budget_per_hr)
            for seed in seeds:
                settings = CompareSettings(
                    queries=args.queries,
                    precision=args.precision,
                    seed=seed,
                    top_k=args.top_k,
                    cdf_queries=1000,
                )
                t0 = time.perf_counter()
                c = compare(scenario, args.budget_per_hr, settings, measurer=Measurer(executor))
                took = time.perf_counter() - t0
                print(
                    f"\n== {model} (QoS {scenario.qos_ms:g} ms, ${args.budget_per_hr:g}/h), "
                    f"seed {seed}, {took:.0f} s"
                )
                for s in c.schemes:
                    print(
                        f"  {s.name:16s} {str(s.pool):40s} {s.policy:10s} "
                        f"{s.allowable_qps:9.1f} qps  tried {s.explorations:3d}"
                        f"{'' if s.explorations_charged else ' (free)'}"
                    )
                for key, value in ratios(scenario, c).items():
                    summary.setdefault(model, {}).setdefault(key, []).append(value)
                summary[model].setdefault("seconds", []).append(took)
    print(f"\nmean [min-max] over seeds {seeds}")
    keys = next(iter(summary.values())).keys()
    for key in keys:
        cells = []
        for model in summary:
            v = np.array(summary[model][key])
            cells.append(f"{model} {v.mean():.2f} [{v.min():.2f}-{v.max():.2f}]")
        print(f"{key:20s} " + "  ".join(cells))
    print("pools within budget  " + "  ".join(f"{m} {within[m]:,.0f}" for m in summary))


if __name__ == "__main__":
    main()
