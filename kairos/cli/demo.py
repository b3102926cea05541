"""``kairos demo``: the main job on the built-in data."""

from __future__ import annotations

import click
import numpy as np

from kairos.catalog import Pool
from kairos.cli.common import progress_bar, table
from kairos.cli.simulate import REFERENCE_POOL
from kairos.scenario import Scenario
from kairos.sim.capacity import allowable_throughput
from kairos.sim.engine import simulate
from kairos.workload import poisson_stream


@click.command()
@click.option("--model", "-m", default="rm2", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def demo(model: str, seed: int) -> None:
    """Simulate the reference pool 2 x g4dn.xlarge + 9 x r5n.large on the built-in data."""
    scenario = Scenario.build(model)
    pool = Pool.parse(REFERENCE_POOL)
    click.echo(f"model {model}, QoS p99 {scenario.qos_ms:g} ms, pool {pool} "
               f"(${pool.cost_per_hr(scenario.prices):.3f}/h), policy fcfs")
    with progress_bar(True, "capacity") as bar:
        cap = allowable_throughput(scenario, pool, "fcfs", seed=seed,
                                   progress=lambda t: bar.update(1))
    rows = []
    for frac in (0.5, 0.8, 1.0, 1.2):
        rate = max(cap.allowable_qps, 1.0) * frac
        stream = poisson_stream(rate, 20000, scenario.mix, np.random.default_rng(seed))
        m = simulate(scenario, pool, "fcfs", stream, seed=seed).records.metrics(
            scenario.qos_ms, 2000)
        rows.append([f"{rate:.1f}", f"{m.throughput_qps:.1f}", f"{m.p50_ms:.1f}",
                     f"{m.p99_ms:.1f}", f"{m.qos_met_fraction:.2%}"])
    click.echo(table(rows, ["rate_qps", "throughput_qps", "p50_ms", "p99_ms", "within_qos"]))
    click.echo(f"allowable throughput (99% within QoS): {cap.allowable_qps:.1f} qps")


COMMANDS = [demo]
