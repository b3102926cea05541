"""``kairos plan``: choose the pool to rent under a budget from profiles alone."""

from __future__ import annotations

import click

from kairos import limits
from kairos.allocator import BOUNDS, PLAN_DEFAULTS, parse_caps, plan
from kairos.allocator.result import Plan
from kairos.cli.common import (
    bounded,
    build_scenario,
    emit_json,
    progress_bar,
    scenario_options,
    table,
)
from kairos.cli.compare import parallel_options
from kairos.runtime.ray_cluster import write_ray_cluster
from kairos.sim.capacity import DEFAULT_MEASUREMENT, Measurement, Measurer
from kairos.sim.parallel import Parallelism, make_executor


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
    type=click.Choice(BOUNDS.names()),
    default=PLAN_DEFAULTS.bound,
    show_default=True,
    help="kairos: the paper's upper bound; fluid: the LP valid for every policy (MILP at scale).",
)
@click.option(
    "--top",
    type=bounded(limits.TOP),
    default=PLAN_DEFAULTS.top,
    show_default=True,
    help="How many ranked pools to show.",
)
@click.option(
    "--verify",
    "verify_top",
    type=bounded(limits.VERIFY_TOP),
    default=PLAN_DEFAULTS.verify_top,
    show_default=True,
    help="Simulate the top K pools offline and pick the best of them.",
)
@click.option(
    "--no-verify",
    is_flag=True,
    help="The pure bound ranking: pick the bound's first pool, simulate nothing.",
)
@click.option(
    "--policy",
    default=PLAN_DEFAULTS.policy,
    show_default=True,
    help="Distribution policy the verification simulates.",
)
@click.option(
    "--queries",
    type=bounded(limits.TRIAL_QUERIES),
    default=DEFAULT_MEASUREMENT.queries,
    show_default=True,
    help="Measured queries per verification trial (at least).",
)
@click.option(
    "--seed", type=bounded(limits.SEED), default=DEFAULT_MEASUREMENT.seed, show_default=True
)
@click.option(
    "--max",
    "max_items",
    multiple=True,
    metavar="TYPE=N",
    help="Cap the count of one type (repeatable).",
)
@parallel_options
@click.option(
    "--ray-cluster",
    "ray_cluster_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write a Ray cluster-launcher config (AWS) for the chosen pool (docs/ray.md).",
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
    no_verify,
    policy,
    queries,
    seed,
    max_items,
    jobs,
    backend,
    ray_cluster_path,
    as_json,
):
    """Pick the pool with the highest throughput under BUDGET_PER_HR, trying none online."""
    scenario = build_scenario(model, qos_ms, batch_mix, profiles_path, prices_path)
    caps = parse_caps(max_items)
    verify_top = 0 if no_verify else verify_top
    measurement = Measurement(queries=queries, precision=DEFAULT_MEASUREMENT.precision, seed=seed)
    parallelism = Parallelism(backend=backend, jobs=jobs)
    with (
        progress_bar(not as_json and verify_top > 0, "verify") as bar,
        make_executor(parallelism) as executor,
    ):
        result = plan(
            scenario,
            budget_per_hr,
            bound=bound,
            caps=caps or None,
            top=top,
            verify_top=verify_top,
            policy=policy,
            measurement=measurement,
            measurer=Measurer(executor),
            progress=lambda r: bar.update(1),
        )
    if ray_cluster_path:
        written = write_ray_cluster(ray_cluster_path, result.pool, scenario.model)
        click.echo(f"wrote the Ray cluster config to {written} (ray up {written})", err=True)
    if as_json:
        emit_json(result.as_dict())
        return
    click.echo(_render(result, scenario.qos_ms))


def _render(result: Plan, qos_ms: float) -> str:
    how = (
        f"{result.pools_considered:,} pools ranked"
        if result.ranking == "enumerated"
        else "ranked by a search"
        if result.ranking == "search"
        else "ranked by the MILP"
    )
    lines = [
        f"model {result.model}, QoS p99 {qos_ms:g} ms, budget ${result.budget_per_hr:g}/h, "
        f"bound {result.bound} ({how})"
    ]
    pick = result.bound_pick
    if result.allowable_qps is not None and pick is not None:
        lines.append(
            f"bound's pick:  {pick.pool}  ${pick.cost_per_hr:.4f}/h  "
            f"bound {_fmt(pick.upper_bound_qps)} qps"
        )
        lines.append(
            f"chosen pool:   {result.pool}  ${result.cost_per_hr:.4f}/h  "
            f"allowable {_fmt(result.allowable_qps)} qps ({result.policy}, best of "
            f"{result.explorations} simulated offline)"
        )
    else:
        lines.append(
            f"chosen pool: {result.pool}  ${result.cost_per_hr:.4f}/h  "
            f"bound {_fmt(result.upper_bound_qps)} qps (not simulated)"
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
    header = ["rank", "pool", "cost_per_hr", "upper_bound_qps", "allowable_qps"]
    legend = (
        f"upper_bound_qps: the {result.bound} upper bound on the pool's allowable throughput, "
        "from the profiles alone; allowable_qps: simulated highest Poisson rate with 99% of "
        "queries within QoS (the pools simulated offline only, '-' otherwise); cost_per_hr "
        "in $/h."
    )
    return "\n".join(lines) + "\n" + table(rows, header) + "\n" + legend


COMMANDS = [plan_command]
