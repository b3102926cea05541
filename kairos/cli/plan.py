"""``kairos plan``: choose the pool to rent under a budget from profiles alone."""

from __future__ import annotations

import click
from click.core import ParameterSource

from kairos import limits
from kairos.allocator import BOUNDS, PLAN_DEFAULTS, parse_caps, plan
from kairos.allocator.cells import CELL_PLAN_DEFAULTS, CellPlan, cells_for_max_rate, plan_cells
from kairos.allocator.result import Plan
from kairos.allocator.target import TargetPlan, cheapest_for_rate
from kairos.catalog import Pool
from kairos.cli.common import (
    bounded,
    build_scenario,
    emit_json,
    progress_bar,
    require_one_goal,
    scenario_options,
    table,
)
from kairos.cli.compare import parallel_options
from kairos.errors import ConfigError
from kairos.scenario import Scenario
from kairos.serving.ray.cluster import write_ray_cluster
from kairos.sim.capacity import DEFAULT_MEASUREMENT, Measurement, Measurer
from kairos.sim.parallel import Parallelism, make_executor


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:,.1f}"


@click.command(name="plan")
@scenario_options
@click.option(
    "--budget-per-hr",
    type=bounded(limits.BUDGET_PER_HR),
    default=None,
    help="Budget in dollars per hour: the pool that serves the most within it.",
)
@click.option(
    "--target-qps",
    type=bounded(limits.RATE_QPS),
    default=None,
    help="Target rate instead: the cheapest pool that holds it (simulated unless --no-verify).",
)
@click.option(
    "--mix-from",
    "mix_from",
    default=None,
    metavar="URL",
    help="Plan on the batch mix a running router observed (its GET /v2/traffic); the model "
    "and QoS are the router's unless --model / --qos-ms are given.",
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
@click.option(
    "--cells",
    type=click.IntRange(min=1),
    default=None,
    help="Plan N cells (each a pool one router serves) within the budget (docs/cells.md).",
)
@click.option(
    "--max-cell-qps",
    type=bounded(limits.RATE_QPS),
    default=None,
    help="Plan as many cells as keep each router at or under R q/s (docs/cells.md).",
)
@click.option(
    "--splitter",
    default=CELL_PLAN_DEFAULTS.splitter,
    show_default=True,
    help="The front balancer's policy the cell plan simulates (with --cells).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def plan_command(
    model,
    qos_ms,
    batch_mix,
    profiles_path,
    prices_path,
    budget_per_hr,
    target_qps,
    mix_from,
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
    cells,
    max_cell_qps,
    splitter,
    as_json,
):
    """The pool with the most throughput within --budget-per-hr, or the cheapest that holds
    --target-qps; from profiles alone, trying no pool online."""
    require_one_goal(
        "plan",
        budget_per_hr,
        target_qps,
        "most throughput for B $/h",
        "cheapest pool that holds R q/s",
    )
    if mix_from is not None:
        scenario = _observed_scenario(
            mix_from, model, qos_ms, batch_mix, profiles_path, prices_path
        )
    else:
        scenario = build_scenario(model, qos_ms, batch_mix, profiles_path, prices_path)
    caps = parse_caps(max_items)
    verify_top = 0 if no_verify else verify_top
    measurement = Measurement(queries=queries, precision=DEFAULT_MEASUREMENT.precision, seed=seed)
    parallelism = Parallelism(backend=backend, jobs=jobs)
    if cells is not None or max_cell_qps is not None:
        _plan_cells(
            scenario,
            budget_per_hr,
            target_qps,
            cells,
            max_cell_qps,
            caps,
            bound,
            verify_top,
            policy,
            splitter,
            measurement,
            as_json,
            ray_cluster_path,
        )
        return
    if target_qps is not None:
        target = _plan_for_rate(
            scenario,
            target_qps,
            caps,
            bound,
            not no_verify,
            policy,
            measurement,
            parallelism,
            as_json,
        )
        _write_cluster(ray_cluster_path, target.pool, scenario.model)
        if as_json:
            emit_json(target.as_dict())
        else:
            click.echo(_render_target(target))
        return
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
    _write_cluster(ray_cluster_path, result.pool, scenario.model)
    if as_json:
        emit_json(result.as_dict())
        return
    click.echo(_render(result, scenario.qos_ms))


def _plan_cells(
    scenario: Scenario,
    budget_per_hr: float | None,
    target_qps: float | None,
    cells: int | None,
    max_cell_qps: float | None,
    caps: dict[str, int],
    bound: str,
    verify_top: int,
    policy: str,
    splitter: str,
    measurement: Measurement,
    as_json: bool,
    ray_cluster_path: str | None,
) -> None:
    """``plan --cells N`` / ``--max-cell-qps R``: a celled service within the budget (with
    ``--ray-cluster``: its cluster, one router node per cell)."""
    if budget_per_hr is None or target_qps is not None:
        raise ConfigError(
            "a celled plan is planned within a budget, and no --budget-per-hr was given.",
            "pass --budget-per-hr B with --cells N or --max-cell-qps R.",
        )
    if cells is not None and max_cell_qps is not None:
        raise ConfigError(
            f"--cells {cells} and --max-cell-qps {max_cell_qps:g} both set the cell count.",
            "pass one of them.",
        )
    if caps:
        raise ConfigError(
            "--max caps the whole pool, and a celled plan plans one cell at a time.",
            "drop --max with --cells / --max-cell-qps.",
        )
    if cells is not None:
        n = cells
    else:
        assert max_cell_qps is not None  # the caller passes one of the two
        n = cells_for_max_rate(scenario, budget_per_hr, max_cell_qps, bound)
    with progress_bar(not as_json, "cell candidates") as bar:
        result = plan_cells(
            scenario,
            budget_per_hr,
            n,
            bound=bound,
            verify_top=max(1, min(verify_top, CELL_PLAN_DEFAULTS.verify_top)),
            policy=policy,
            splitter=splitter,
            measurement=measurement,
            progress=lambda c: bar.update(1),
        )
    _write_cluster(ray_cluster_path, result.chosen.pool, scenario.model, result.n_cells)
    if as_json:
        emit_json(result.as_dict())
        return
    click.echo(_render_cells(result))


def _render_cells(result: CellPlan) -> str:
    c = result.chosen
    head = [
        ["model", result.model],
        ["budget_per_hr", f"{result.budget_per_hr:g}"],
        ["cells", str(result.n_cells)],
        ["cell pools", " | ".join(dict.fromkeys(str(p) for p in c.cells))],
        ["cut", c.kind],
        ["pool", str(c.pool)],
        ["cost_per_hr", f"{c.cost_per_hr:.3f}"],
        ["fluid_bound_qps (sum of cells)", _fmt(c.fluid_bound_qps)],
        [f"allowable_qps ({result.splitter}, {result.policy})", _fmt(c.allowable_qps)],
    ]
    rows = [
        [
            t.kind,
            " | ".join(dict.fromkeys(str(p) for p in t.cells)),
            f"{t.cost_per_hr:.3f}",
            _fmt(t.fluid_bound_qps),
            _fmt(t.allowable_qps),
        ]
        for t in result.tried
    ]
    return (
        table(head, ["celled plan", "value"])
        + "\n\n"
        + table(rows, ["cut", "cells", "$/h", "fluid bound", "allowable_qps"])
    )


def _write_cluster(path: str | None, pool: Pool, model: str, cells: int | None = None) -> None:
    if path:
        written = write_ray_cluster(path, pool, model, cells=cells)
        click.echo(f"wrote the Ray cluster config to {written} (ray up {written})", err=True)


def _observed_scenario(
    url: str,
    model: str,
    qos_ms: float | None,
    batch_mix: str,
    profiles_path: str | None,
    prices_path: str | None,
) -> Scenario:
    """The router's model, QoS and observed mix; --model / --qos-ms win when given."""
    from kairos.client.admin import fetch_traffic
    from kairos.control.advise import observed_mix

    given = click.get_current_context().get_parameter_source
    if given("batch_mix") != ParameterSource.DEFAULT:
        raise ConfigError(
            f"--mix-from {url} and --batch-mix {batch_mix} both name the mix.",
            "pass one of them.",
        )
    view = fetch_traffic(url)
    if given("model") == ParameterSource.DEFAULT:
        model = str(view["model"])
    if qos_ms is None and model == view["model"]:
        qos_ms = float(view["qos_ms"])
    mix = observed_mix(view, url)
    click.echo(
        f"planning on the mix {url} observed: {view['queries']} queries over "
        f"{view['span_s']:.0f} s, mean batch {mix.mean:.0f}",
        err=True,
    )
    return Scenario.from_files(
        model, qos_ms=qos_ms, profiles_path=profiles_path, prices_path=prices_path, mix=mix
    )


def _plan_for_rate(
    scenario: Scenario,
    target_qps: float,
    caps: dict[str, int],
    bound: str,
    verify: bool,
    policy: str,
    measurement: Measurement,
    parallelism: Parallelism,
    as_json: bool,
) -> TargetPlan:
    with (
        progress_bar(not as_json and verify, "candidates") as bar,
        make_executor(parallelism) as executor,
    ):
        result = cheapest_for_rate(
            scenario,
            target_qps,
            caps=caps or None,
            bound=bound,
            verify=verify,
            policy=policy,
            measurement=measurement,
            measurer=Measurer(executor),
            progress=lambda r: bar.update(1),
        )
    return result


def _render_target(result: TargetPlan) -> str:
    head = f"model {result.model}, QoS p99 {result.qos_ms:g} ms, target {result.target_qps:g} q/s"
    if result.allowable_qps is None:
        return (
            f"{head}\ncheapest pool by the {result.bound} bound alone: {result.pool}  "
            f"${result.cost_per_hr:.4f}/h  bound {_fmt(result.upper_bound_qps)} qps "
            "(not simulated)"
        )
    rows = [
        [
            str(r.pool),
            f"{r.cost_per_hr:.4f}",
            _fmt(r.upper_bound_qps),
            "holds" if (r.allowable_qps or 0) >= result.target_qps else "misses",
        ]
        for r in result.tried[:10]
    ]
    legend = (
        "pools whose fluid bound reaches the target, cheapest first, each simulated once at "
        f"the target rate under {result.policy}; fluid_bound_qps: an upper bound for any "
        "policy; cost_per_hr in $/h."
    )
    return (
        f"{head}\ncheapest pool that holds it: {result.pool}  ${result.cost_per_hr:.4f}/h  "
        f"allowable {_fmt(result.allowable_qps)} qps ({result.policy}, simulated; "
        f"{result.candidates_tried} pools tried)\n"
        + table(rows, ["pool", "cost_per_hr", "fluid_bound_qps", f"at {result.target_qps:g} q/s"])
        + "\n"
        + legend
    )


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
