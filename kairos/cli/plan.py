"""``kairos plan``: choose the pool to rent under a budget from profiles alone."""

from __future__ import annotations

import click

from kairos import limits
from kairos.allocator import BOUNDS, parse_caps, plan
from kairos.allocator.plan import DEFAULT_TOP, VERIFY_QUERIES
from kairos.cli.common import (
    bounded,
    build_scenario,
    emit_json,
    progress_bar,
    scenario_options,
    table,
)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:,.1f}"


@click.command(name="plan")
@scenario_options
@click.option(
    "--budget-per-hr",
    type=bounded(limits.BUDGET_PER_HR),
    required=True,
    help="Budget in dollars per hour.",
)
@click.option(
    "--bound",
    type=click.Choice(BOUNDS),
    default="kairos",
    show_default=True,
    help="kairos: the paper's upper bound; fluid: the exact LP (and MILP).",
)
@click.option(
    "--top",
    type=bounded(limits.TOP),
    default=DEFAULT_TOP,
    show_default=True,
    help="How many ranked pools to show.",
)
@click.option(
    "--verify",
    "verify_top",
    type=bounded(limits.VERIFY_TOP),
    default=0,
    show_default=True,
    help="Simulate the top K pools and re-rank them by allowable throughput.",
)
@click.option(
    "--policy", default="kairos", show_default=True, help="Distribution policy used by --verify."
)
@click.option(
    "--queries",
    type=bounded(limits.TRIAL_QUERIES),
    default=VERIFY_QUERIES,
    show_default=True,
    help="Measured queries per --verify trial.",
)
@click.option("--seed", type=bounded(limits.SEED), default=0, show_default=True)
@click.option(
    "--max",
    "max_items",
    multiple=True,
    metavar="TYPE=N",
    help="Cap the count of one type (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def plan_command(
    model,
    qos_ms,
    batch_mix,
    profiles_path,
    prices_path,
    budget_per_hr,
    bound,
    top,
    verify_top,
    policy,
    queries,
    seed,
    max_items,
    as_json,
):
    """Pick the pool with the highest throughput bound under BUDGET_PER_HR, trying none."""
    scenario = build_scenario(model, qos_ms, batch_mix, profiles_path, prices_path)
    caps = parse_caps(max_items)
    with progress_bar(not as_json and verify_top > 0, "verify", total=verify_top) as bar:
        result = plan(
            scenario,
            budget_per_hr,
            bound=bound,
            caps=caps or None,
            top=top,
            verify_top=verify_top,
            policy=policy,
            queries=queries,
            seed=seed,
            progress=lambda r: bar.update(1),
        )
    if as_json:
        emit_json(result.to_json())
        return
    click.echo(
        f"model {model}, QoS p99 {scenario.qos_ms:g} ms, budget ${budget_per_hr:g}/h, "
        f"bound {bound} ({result.pools_considered} pools ranked)"
    )
    click.echo(
        f"chosen pool: {result.pool}  ${result.cost_per_hr:.4f}/h  "
        f"bound {_fmt(result.upper_bound_qps)} qps"
        + (
            f"  allowable {_fmt(result.allowable_qps)} qps ({policy})"
            if result.allowable_qps is not None
            else ""
        )
    )
    rows = [
        [
            str(i + 1),
            str(r.pool),
            f"{r.cost_per_hr:.4f}",
            _fmt(r.upper_bound_qps),
            _fmt(r.allowable_qps),
        ]
        for i, r in enumerate(result.ranked)
    ]
    click.echo(table(rows, ["rank", "pool", "cost_per_hr", "upper_bound_qps", "allowable_qps"]))
    click.echo(
        f"upper_bound_qps: the {bound} upper bound on the pool's allowable throughput, from "
        "the profiles alone; allowable_qps: simulated highest Poisson rate with 99% of "
        f"queries within QoS under {policy} (the top --verify K pools only, '-' otherwise); "
        "cost_per_hr in $/h."
    )


COMMANDS = [plan_command]
