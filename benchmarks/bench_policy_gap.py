"""Where the ``kairos`` policy loses throughput against the fluid bound, per model.

For each built-in model on its planned pool ($2.5/h, the KAIROS bound's pick), measured in one
run with the same seeds:

- ``fluid``: the fluid bound (no policy can sustain more; it ignores queueing);
- ``kairos``: the simulated allowable throughput of the ``kairos`` policy;
- ``kairos, exact service``: the same with every service time equal to its profile mean, so
  the policy's estimates are exact and there is no tail: the gain over ``kairos`` is what
  service-time variability (estimate errors and the tail) costs;
- ``kairos, no window cap`` is not listed: the 64-query cap only binds beyond 32 instances;
- per type, the busy share at the allowable rate under ``kairos`` (the fluid LP runs the
  types it needs at 100%), which shows where the policy keeps headroom.

What is left between ``kairos, exact service`` and ``fluid`` is queueing (a finite pool under
Poisson arrivals cannot run every type at 100% and still meet a p99 target) plus whatever the
matching gives away; the last columns try the policy's knobs to see whether a policy closes
any of it.

    python benchmarks/bench_policy_gap.py [--seeds 0,1,2] [--models rm2,dien]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from kairos.allocator import fluid_bound, plan
from kairos.catalog import Pool
from kairos.profiles import LatencyProfile, ModelProfiles
from kairos.scenario import Scenario
from kairos.sim.capacity import Measurement, measure

MODELS = ("rm2", "wnd", "mtwnd", "dien", "ncf")
KNOBS = {"urgency 0.3": {"urgency_frac": 0.3}, "safeguard 0": {"safeguard_frac": 0.0}}


def exact_service(scenario: Scenario) -> Scenario:
    """Every cell's service time fixed at its mean (the inverse CDF made flat)."""
    by_type = {}
    for t in scenario.profiles.instance_types:
        prof = scenario.profiles.get(t)
        q = prof.quantiles_ms
        means = (q.sum(axis=1) - 0.5 * (q[:, 0] + q[:, -1])) / (q.shape[1] - 1)
        flat = np.repeat(means[:, None], q.shape[1], axis=1)
        by_type[t] = LatencyProfile(prof.model, t, prof.batch_sizes, flat)
    return replace(scenario, profiles=ModelProfiles(scenario.model, by_type))


def mean_qps(
    scenario: Scenario, pool: Pool, seeds: list[int], queries: int, **options: object
) -> tuple[float, dict[str, float]]:
    """Mean allowable throughput over ``seeds`` and the busy shares at it (first seed)."""
    runs = [
        measure(scenario, pool, "kairos", Measurement(queries, seed=s), policy_options=options)
        for s in seeds
    ]
    busy = runs[0].metrics.utilisation if runs[0].metrics is not None else {}
    return float(np.mean([r.allowable_qps for r in runs])), busy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--queries", type=int, default=3000)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(
        "model  pool                        fluid   kairos (x fluid)   exact service (x fluid)  "
        + "  ".join(f"{k:>12s}" for k in KNOBS)
        + "   busy at allowable"
    )
    for model in args.models.split(","):
        scenario = Scenario.build(model)
        pool = plan(scenario, 2.5, top=1, verify_top=0).pool
        fb = fluid_bound(scenario, pool)
        exact = exact_service(scenario)

        k, busy = mean_qps(scenario, pool, seeds, args.queries)
        kx, _ = mean_qps(exact, pool, seeds, args.queries)
        knobs = [mean_qps(scenario, pool, seeds, args.queries, **o)[0] for o in KNOBS.values()]
        cells = [f"{model:6s} {str(pool):27s} {fb:7.1f}", f"{k:7.1f} ({k / fb:.2f})     "]
        cells += [f"{kx:7.1f} ({kx / fb:.2f})"] + [f"{q:7.1f} ({q / k:.2f})" for q in knobs]
        cells.append(", ".join(f"{t} {u:.0%}" for t, u in busy.items()))
        print("  ".join(cells))


if __name__ == "__main__":
    main()
