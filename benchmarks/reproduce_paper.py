"""Reproduce the KAIROS paper's headline on the built-in data.

All 5 models at $2.5/h with their default QoS targets. For each model prints the allowable
throughput of every scheme, then the ratios kairos / homogeneous, kairos / best competitor
(ribbon, drs, clockwork, homogeneous), kairos / oracle, and kairos / its pool's upper bound
(KAIROS bound and fluid bound), and the time the model took. Every figure is measured in this
run with the simulator's allowable-throughput search, one seed for all schemes.

Targets (from the issue): kairos >= 1.5 x homogeneous and >= every competitor on every model,
kairos >= 0.95 x oracle. Independent re-simulation of the paper's artifact: kairos/homogeneous
about 2.5 (rm2), 1.6 (wnd), 1.65 (mtwnd), 1.8 (dien), 2.1 (ncf).

Usage: python benchmarks/reproduce_paper.py [--queries N] [--top-k K] [--models rm2,wnd]
"""

from __future__ import annotations

import argparse
import time

from kairos import allocator
from kairos.compare import CompareSettings, compare
from kairos.scenario import Scenario

COMPETITORS = ("homogeneous", "ribbon", "drs", "clockwork")
MODELS = ("rm2", "wnd", "mtwnd", "dien", "ncf")


def main() -> None:
    ap = argparse.ArgumentParser(description="KAIROS paper headline on the built-in data")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--budget-per-hr", type=float, default=2.5)
    ap.add_argument("--queries", type=int, default=3000)
    ap.add_argument("--precision", type=float, default=0.03)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    settings = CompareSettings(
        queries=args.queries,
        precision=args.precision,
        seed=args.seed,
        top_k=args.top_k,
        cdf_queries=1000,
    )
    summary = []
    for model in args.models.split(","):
        t0 = time.perf_counter()
        scenario = Scenario.build(model)
        c = compare(scenario, args.budget_per_hr, settings)
        took = time.perf_counter() - t0
        print(
            f"\n== {model} (QoS {scenario.qos_ms:g} ms, ${args.budget_per_hr:g}/h) in {took:.0f} s"
        )
        for s in c.schemes:
            print(
                f"  {s.name:13s} {str(s.pool):40s} {s.policy:10s} "
                f"{s.allowable_qps:9.1f} qps  tried {s.explorations:3d}"
                f"{'' if s.explorations_charged else ' (free)'}"
            )
        k = c.scheme("kairos")
        best = max((c.scheme(n) for n in COMPETITORS), key=lambda s: s.allowable_qps)
        kb = allocator.kairos_bound(scenario, k.pool)
        summary.append(
            (
                model,
                c.ratio("kairos", "homogeneous"),
                k.allowable_qps / best.allowable_qps if best.allowable_qps else 0.0,
                best.name,
                c.ratio("kairos", "oracle"),
                k.allowable_qps / kb if kb else 0.0,
                k.allowable_qps / k.upper_bound_qps if k.upper_bound_qps else 0.0,
                took,
            )
        )
    print(
        "\nmodel   kairos/homog  kairos/best-competitor   kairos/oracle  "
        "kairos/KAIROS-bound  kairos/fluid-bound  time"
    )
    for m, h, b, bn, o, ub, fb, took in summary:
        print(
            f"{m:7s} {h:12.2f}  {b:10.2f} ({bn:11s})  {o:13.2f}  {ub:19.2f}  {fb:18.2f}  "
            f"{took:4.0f} s"
        )


if __name__ == "__main__":
    main()
