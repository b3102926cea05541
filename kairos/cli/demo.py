"""``kairos demo``: the main job on the built-in data.

Plans a pool for rm2 at $2.5/h and QoS 350 ms, compares KAIROS with the best homogeneous pool
and earlier schemes using modest simulation sizes, prints the table and writes a plot and a
report into a folder. ``--live`` instead serves a small pool on loopback and drives load
through it with the ``kairos`` policy and then ``fcfs``.
"""

from __future__ import annotations

from pathlib import Path

import click

from kairos.cli.common import table
from kairos.cli.compare import render_table, run_comparisons, settings_info, write_outputs
from kairos.compare import CompareSettings

DEMO_SETTINGS = CompareSettings(
    queries=4000, precision=0.04, seed=0, top_k=6, ribbon_max_explorations=15, cdf_queries=3000
)


@click.command()
@click.option("--model", "-m", default="rm2", show_default=True)
@click.option("--budget-per-hr", type=float, default=2.5, show_default=True)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(),
    default="kairos-demo-out",
    show_default=True,
    help="Folder for the plot and the report.",
)
@click.option("--live", is_flag=True, help="Serve a small pool on loopback instead.")
def demo(model: str, budget_per_hr: float, out_dir: str, live: bool) -> None:
    """Plan and compare on the built-in data (rm2, $2.5/h, QoS 350 ms)."""
    if live:
        from kairos.runtime.demo import run_live_demo

        run_live_demo(model=model, echo=click.echo)
        return
    from kairos import allocator
    from kairos.scenario import Scenario

    scenario = Scenario.build(model)
    plan = allocator.plan(scenario, budget_per_hr, bound="kairos", top=5, verify_top=0)
    click.echo(
        f"Plan for {model} at ${budget_per_hr:g}/h, QoS p99 {scenario.qos_ms:g} ms "
        f"(upper bound only, no pool tried online):"
    )
    rows = [
        [str(r.pool), f"{r.cost_per_hr:.3f}", f"{r.upper_bound_qps:.1f}"] for r in plan.ranked[:5]
    ]
    click.echo(table(rows, ["pool", "$/h", "upper bound qps"]) + "\n")
    click.echo("Comparing schemes by simulated allowable throughput ...")
    comparisons = run_comparisons([model], [budget_per_hr], [None], DEMO_SETTINGS)
    out = Path(out_dir)
    info = settings_info([model], [budget_per_hr], [None], DEMO_SETTINGS, "production", None, None)
    info["command"] = f"kairos demo --model {model} --budget-per-hr {budget_per_hr:g}"
    written = write_outputs(
        comparisons, str(out / "throughput.png"), str(out / "report.html"), info
    )
    c = comparisons[0]
    click.echo(render_table(c))
    best_other = max(
        (
            s
            for s in c.schemes
            if s.name not in ("kairos", "kairos-verified", "kairos-fluid", "oracle")
        ),
        key=lambda s: s.allowable_qps,
    )
    click.echo(
        f"\nkairos / homogeneous = {c.ratio('kairos', 'homogeneous'):.2f}, "
        f"kairos / best competitor ({best_other.name}) = "
        f"{c.ratio('kairos', best_other.name):.2f}, "
        f"kairos / oracle = {c.ratio('kairos', 'oracle'):.2f}"
    )
    click.echo(f"wrote {', '.join(str(p) for p in written)} (folder {out}/)")


COMMANDS = [demo]
