"""Simulator speed: queries simulated per second with FCFS on the reference pool.

Pool 2 x g4dn.xlarge + 9 x r5n.large, model rm2, Poisson load at 80% of the pool's FCFS
allowable throughput (about 40 qps). Prints the best of a few repetitions, measured here, in
one run. Target: at least 200,000 queries/s on a 2-core machine.

Usage: python benchmarks/bench_sim.py [--queries N] [--repeats R]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from kairos.catalog import Pool
from kairos.scenario import Scenario
from kairos.sim.engine import simulate
from kairos.workload import poisson_stream


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    scenario = Scenario.build("rm2")
    pool = Pool.parse("g4dn.xlarge=2,r5n.large=9")
    stream = poisson_stream(40.0, args.queries, scenario.mix, np.random.default_rng(0))
    best = float("inf")
    for rep in range(args.repeats):
        t0 = time.perf_counter()
        simulate(scenario, pool, "fcfs", stream, seed=rep)
        best = min(best, time.perf_counter() - t0)
    rate = args.queries / best
    print(f"pool {pool}, model rm2, policy fcfs, {args.queries} queries at 40 qps")
    print(
        f"best of {args.repeats}: {best:.3f} s -> {rate:,.0f} queries/s "
        f"({rate / 200_000:.2f} x the 200,000 queries/s target)"
    )


if __name__ == "__main__":
    main()
