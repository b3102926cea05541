"""``kairos demo``: the main job on the built-in data.

Plans a pool for rm2 at $2.5/h and QoS 350 ms, compares KAIROS with the best homogeneous pool
and earlier schemes using modest simulation sizes, prints the table and writes a plot and a
report into a folder. ``--live`` instead serves a small pool on loopback and drives the same
load through it under the ``kairos`` policy and then ``fcfs``, and prints them side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from kairos import limits
from kairos.cli.common import bounded, check_output_path, table
from kairos.cli.compare import (
    render_legend,
    render_table,
    run_comparisons,
    settings_info,
    write_outputs,
)
from kairos.compare import CompareSettings
from kairos.demos.live import DEMO_POOL, DemoRow

DEMO_SETTINGS = CompareSettings(
    queries=4000, precision=0.04, seed=0, top_k=6, ribbon_max_explorations=15, cdf_queries=3000
)


@click.command()
@click.option("--model", "-m", default=None, help="Model (default: rm2; dien with --live).")
@click.option("--budget-per-hr", type=bounded(limits.BUDGET_PER_HR), default=2.5, show_default=True)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(),
    default="kairos-demo-out",
    show_default=True,
    help="Folder for the plot and the report.",
)
@click.option("--live", is_flag=True, help="Serve a small pool on loopback instead.")
@click.option("--pool", "pool_text", default=DEMO_POOL, show_default=True, help="--live: the pool.")
@click.option(
    "--rate-qps",
    type=bounded(limits.RATE_QPS),
    default=None,
    help=(
        "--live: the offered rate (default: between the two policies' simulated allowable "
        "throughputs, so they differ)."
    ),
)
@click.option(
    "--duration-s", type=bounded(limits.DURATION_S), default=15.0, show_default=True, help="--live."
)
@click.option(
    "--time-scale", type=bounded(limits.TIME_SCALE), default=1.0, show_default=True, help="--live."
)
@click.option(
    "--real",
    is_flag=True,
    help="Profile a real model (default dien) on local instance types, plan, serve and "
    "measure it live (docs/models.md).",
)
def demo(
    model: str | None,
    budget_per_hr: float,
    out_dir: str,
    live: bool,
    pool_text: str,
    rate_qps: float | None,
    duration_s: float,
    time_scale: float,
    real: bool,
) -> None:
    """Plan and compare on the built-in data (rm2, $2.5/h, QoS 350 ms); --live: serve a small
    pool under kairos and fcfs; --real: the whole loop on a real model."""
    if real:
        from click.core import ParameterSource

        from kairos.demos.real import run_real_demo

        given = click.get_current_context().get_parameter_source
        budget = budget_per_hr if given("budget_per_hr") != ParameterSource.DEFAULT else None
        run_real_demo(model, budget, out_dir, click.echo, lambda line: click.echo(line, err=True))
        return
    if live:
        from kairos.demos.live import run_live_demo

        live_rows = run_live_demo(
            model or "dien",
            pool_text,
            rate_qps=rate_qps,
            duration_s=duration_s,
            time_scale=time_scale,
            echo=click.echo,
        )
        click.echo(format_live_demo(live_rows))
        return
    model = model or "rm2"
    from kairos import allocator
    from kairos.scenario import Scenario

    check_output_path(out_dir, "--out", folder=True)  # before a minute of work, not after
    scenario = Scenario.build(model)
    plan = allocator.plan(scenario, budget_per_hr, bound="kairos", top=5, verify_top=0)
    click.echo(
        f"Plan for {model} at ${budget_per_hr:g}/h, QoS p99 {scenario.qos_ms:g} ms "
        f"(upper bound only, no pool tried online):"
    )
    rows = [
        [str(r.pool), f"{r.cost_per_hr:.3f}", f"{r.upper_bound_qps:.1f}"] for r in plan.ranked[:5]
    ]
    click.echo(table(rows, ["pool", "$/h", "upper bound qps"]))
    click.echo(
        "upper bound qps: the KAIROS upper bound on the pool's allowable throughput, from "
        "the profiles alone (no pool simulated)\n"
    )
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
    click.echo(render_legend())
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


def format_live_demo(rows: Sequence[DemoRow]) -> str:
    header = [
        "policy",
        "sim_allowable_qps",
        "sent",
        "completed",
        "rejected",
        "errors",
        "throughput_qps",
        "p50_ms",
        "p99_ms",
        "within_qos",
    ]
    body = [
        [
            r.policy,
            f"{r.simulated_allowable_qps:.1f}",
            str(r.report.sent),
            str(r.report.completed),
            str(r.report.rejected),
            str(r.report.errors),
            f"{r.report.throughput_qps:.1f}",
            f"{r.report.p50_ms:.1f}",
            f"{r.report.p99_ms:.1f}",
            f"{r.report.qos_met_fraction:.2%}",
        ]
        for r in rows
    ]
    return table(body, header)


COMMANDS = [demo]
