"""Simulator speed: queries simulated per second on the reference pool, per policy.

Pool 2 x g4dn.xlarge + 9 x r5n.large, model rm2, Poisson load at about 0.9 of what the pool
sustains under each policy (``fcfs`` 40 qps, ``kairos`` 100 qps; ``--rate-qps`` sets one rate
for all). Prints the best of a few repetitions, measured here, in one run, for each policy.
Targets: at least 200,000 queries/s with ``fcfs`` and 50,000 with ``kairos`` (issue 11) on a
2-core machine.

Usage: python benchmarks/bench_sim.py [--queries N] [--repeats R] [--policies fcfs,kairos]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from kairos.catalog import Pool
from kairos.scenario import Scenario
from kairos.sim.engine import simulate
from kairos.workload import poisson_stream

TARGETS = {"fcfs": 200_000, "kairos": 50_000}
RATES_QPS = {"fcfs": 40.0, "kairos": 100.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rate-qps", type=float, default=None)
    ap.add_argument("--policies", default="fcfs,kairos")
    args = ap.parse_args()
    scenario = Scenario.build("rm2")
    pool = Pool.parse("g4dn.xlarge=2,r5n.large=9")
    print(f"pool {pool}, model rm2, {args.queries} queries")
    for policy in args.policies.split(","):
        rate_qps = args.rate_qps or RATES_QPS.get(policy, 40.0)
        stream = poisson_stream(rate_qps, args.queries, scenario.mix, np.random.default_rng(0))
        best = float("inf")
        for rep in range(args.repeats):
            t0 = time.perf_counter()
            simulate(scenario, pool, policy, stream, seed=rep)
            best = min(best, time.perf_counter() - t0)
        rate = args.queries / best
        target = TARGETS.get(policy)
        versus = f" ({rate / target:.2f} x the {target:,} queries/s target)" if target else ""
        print(
            f"  {policy:8s} at {rate_qps:g} qps, best of {args.repeats}: {best:.3f} s -> "
            f"{rate:,.0f} queries/s{versus}"
        )


if __name__ == "__main__":
    main()
