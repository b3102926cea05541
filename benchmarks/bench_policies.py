"""Allowable throughput of every registered distribution policy, relative to ``kairos``.

Cases: 2 x g4dn.xlarge + 9 x r5n.large for each built-in model at its default QoS, and
1 x g4dn.xlarge + 13 x r5n.large for rm2. Every policy sees the same seeds (same arrivals,
batch sizes and service-time draws). DRS's threshold is first tuned by hill climbing on the
same pool, model, QoS and seed (tuning is not charged to it).

    python benchmarks/bench_policies.py                       # full run (a few minutes)
    python benchmarks/bench_policies.py --queries 1000 --models rm2,dien --seeds 0
"""

from __future__ import annotations

import time

import click
import numpy as np

from kairos.catalog import Pool
from kairos.cli.common import table
from kairos.distributor import policy_names
from kairos.scenario import Scenario
from kairos.sim import capacity
from kairos.sim.capacity import DEFAULT_QUERIES, Measurement
from kairos.sim.tuning import tune_drs

REFERENCE_POOL = "g4dn.xlarge=2,r5n.large=9"
RM2_EXTRA_POOL = "g4dn.xlarge=1,r5n.large=13"
MODELS = ("rm2", "wnd", "mtwnd", "dien", "ncf")


def cases(models: list[str]) -> list[tuple[str, str]]:
    out = [(m, REFERENCE_POOL) for m in models]
    if "rm2" in models:
        out.append(("rm2", RM2_EXTRA_POOL))
    return out


def measure(
    model: str, pool_text: str, policies: list[str], queries: int, seeds: list[int]
) -> dict[str, float]:
    """Mean allowable throughput over ``seeds`` of each policy on one case."""
    scenario = Scenario.build(model)
    pool = Pool.parse(pool_text)
    out: dict[str, float] = {}
    for name in policies:
        qps = []
        for seed in seeds:
            m = Measurement(queries=queries, seed=seed)
            options = None
            if name == "drs":
                tuned = tune_drs(scenario, pool, measurement=m)
                options = {"threshold": tuned.threshold}
            res = capacity.measure(scenario, pool, name, m, policy_options=options)
            qps.append(res.allowable_qps)
        out[name] = float(np.mean(qps))
    return out


@click.command()
@click.option(
    "--queries",
    type=int,
    default=DEFAULT_QUERIES,
    show_default=True,
    help="Measured queries per capacity trial.",
)
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds.")
@click.option("--models", default=",".join(MODELS), show_default=True)
@click.option("--policies", default="", help="Comma-separated policies (default: all).")
def main(queries: int, seeds: str, models: str, policies: str) -> None:
    seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    names = [p for p in policies.split(",") if p] or list(policy_names())
    if "kairos" in names:
        names = ["kairos"] + [p for p in names if p != "kairos"]
    rows = []
    losses = []
    for model, pool_text in cases([m for m in models.split(",") if m]):
        t0 = time.perf_counter()
        qps = measure(model, pool_text, names, queries, seed_list)
        ref = qps.get("kairos", 0.0)
        for name in names:
            ratio = qps[name] / ref if ref > 0 else float("nan")
            rows.append([model, pool_text, name, f"{qps[name]:.1f}", f"{ratio:.2f}"])
            if name != "kairos" and ratio > 1.0:
                losses.append(f"{name} beats kairos on {model} / {pool_text} ({ratio:.2f}x)")
        click.echo(f"# {model} {pool_text}: {time.perf_counter() - t0:.1f} s", err=True)
    click.echo(table(rows, ["model", "pool", "policy", "allowable_qps", "vs_kairos"]))
    click.echo(f"queries/trial={queries} seeds={seed_list}")
    for line in losses or ["kairos is at least as good as every competitor on every case"]:
        click.echo(line)


if __name__ == "__main__":
    main()
