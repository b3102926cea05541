"""The price of cutting a pool into cells, simulated (issue 23; docs/cells.md).

For each built-in model: plan a celled service for ``--budget-per-hr`` (default $20/h) with
``--cells`` (default 8) cells (``kairos.allocator.cells.plan_cells``: every candidate cut is
simulated, the best is chosen), then measure the allowable throughput of the chosen
instances behind one central queue and cut into 1, 2, 4, 8, 16 and 64 cells
(``kairos.sim.cells.split_pool``) behind the front splitter, and print each as a ratio to
the central queue. Also printed: the planner's choice against the best cut it tried.

    python benchmarks/bench_cells_sim.py                  # every model, about 10 CPU minutes
    python benchmarks/bench_cells_sim.py --models dien --counts 1,8

Targets (issue 23): 8 cells keep at least 0.95 of the central queue; the planner's choice is
within 2% of the best cut it tried. Figures are simulated and seeded: a rerun prints the same.
"""

from __future__ import annotations

import argparse
import sys
import time

from kairos.allocator.cells import CELL_PLAN_DEFAULTS, plan_cells
from kairos.profiles import default_profiles
from kairos.scenario import Scenario
from kairos.sim.capacity import Measurement, measure
from kairos.sim.celled import celled_simulator, cut

COUNTS = (1, 2, 4, 8, 16, 64)
TARGET_RATIO = 0.95
TARGET_CHOICE = 0.98
POLICY = CELL_PLAN_DEFAULTS.policy


def run_model(model: str, args: argparse.Namespace, counts: tuple[int, ...]) -> list[str]:
    sc = Scenario.build(model)
    m = Measurement(queries=args.queries, precision=args.precision, seed=args.seed)
    t0 = time.process_time()
    planned = plan_cells(sc, args.budget_per_hr, args.cells, splitter=args.splitter, measurement=m)
    pool = planned.chosen.pool
    central = measure(sc, pool, POLICY, m).allowable_qps
    choice = planned.chosen.allowable_qps / planned.best_tried_qps
    lines = [
        f"{model}: {args.cells} x [{' | '.join(sorted({str(c) for c in planned.chosen.cells}))}]"
        f" ({planned.chosen.kind}), ${planned.chosen.cost_per_hr:.2f}/h, central queue "
        f"{central:,.0f} q/s, fluid bound of the cells {planned.chosen.fluid_bound_qps:,.0f}",
        f"  planner's choice / best cut tried: "
        f"{choice:.3f}{' (below target)' if choice < TARGET_CHOICE else ''} "
        f"(tried {len(planned.tried)}: "
        + ", ".join(f"{c.kind} {c.allowable_qps:,.0f}" for c in planned.tried)
        + ")",
    ]
    row = []
    for n in counts:
        if n > pool.size:
            row.append(f"{n}: -")
            continue
        if n == 1:
            # One cell is the central queue, decision for decision (tests/sim/test_celled.py).
            got = central
        elif n == args.cells:
            got = planned.chosen.allowable_qps
        else:
            parts = cut(sc, pool, n)
            simulator = celled_simulator(parts, args.splitter)
            got = measure(sc, pool, POLICY, m, guess_qps=central, simulator=simulator).allowable_qps
        ratio = got / central if central > 0 else float("nan")
        flag = " (below target)" if n == args.cells and ratio < TARGET_RATIO else ""
        row.append(f"{n}: {ratio:.3f}{flag}")
    lines.append("  celled / central: " + "  ".join(row))
    lines.append(f"  ({time.process_time() - t0:.0f} CPU s)")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(default_profiles().models))
    p.add_argument("--counts", default=",".join(str(n) for n in COUNTS))
    p.add_argument("--budget-per-hr", type=float, default=20.0)
    p.add_argument("--cells", type=int, default=8)
    p.add_argument("--splitter", default=CELL_PLAN_DEFAULTS.splitter)
    p.add_argument("--queries", type=int, default=3000)
    p.add_argument("--precision", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    counts = tuple(int(n) for n in args.counts.split(","))
    print(
        f"cells in simulation: ${args.budget_per_hr:g}/h planned as {args.cells} cells, "
        f"splitter {args.splitter}, precision {args.precision:g}, seed {args.seed}"
    )
    for model in args.models.split(","):
        for line in run_model(model, args, counts):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
