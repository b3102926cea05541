"""``kairos simulate`` and ``kairos capacity``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
import numpy as np
from click.core import ParameterSource

from kairos import limits
from kairos.catalog import Pool
from kairos.cli.common import (
    bounded,
    build_scenario,
    emit_json,
    output_file,
    parse_policy_options,
    parse_pool,
    policy_options_option,
    progress_bar,
    scenario_options,
    table,
)
from kairos.control.autoscale import AUTOSCALERS, AutoscaleContext
from kairos.distributor import policy_names
from kairos.errors import ConfigError
from kairos.scenario import Scenario
from kairos.sim.autoscale import CloudSettings, Observation
from kairos.sim.capacity import (
    DEFAULT_PRECISION,
    DEFAULT_QUERIES,
    Measurement,
    allowable_throughput,
    default_warmup,
)
from kairos.sim.celled import DEFAULT_CELLS, SPLITTERS, cut, measure_cells, simulate_cells
from kairos.sim.engine import simulate as run_simulation
from kairos.sim.timeline import (
    TimelineResult,
    TimelineSettings,
    percent_down,
    simulate_timeline,
)
from kairos.workload import check_batches_within, load_trace, poisson_stream

FC = TypeVar("FC", bound=Callable[..., Any])

REFERENCE_POOL = "g4dn.xlarge=2,r5n.large=9"
# The defaults of an autoscaled replay, declared once in their settings classes.
CLOUD = CloudSettings()
TIMELINE = TimelineSettings()
GOOD_MINUTE = 0.99  # a minute counts as bad below this share within QoS
# What ``simulate --cells`` reports of the celled run, beside the central queue's figures.
CELLED_METRICS = ("throughput_qps", "p50_ms", "p99_ms", "qos_met_fraction")


class BootDelays(click.ParamType):
    """``S`` (every type), ``TYPE=S,...`` or both (``90,g4dn.xlarge=120``): boot delays in s."""

    name = "boot"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        default = CLOUD.default_boot_s
        per_type: dict[str, float] = {}
        for part in str(value).split(","):
            part = part.strip()
            name, sep, text = part.rpartition("=")
            try:
                seconds = float(text)
            except ValueError:
                raise ConfigError(
                    f"--boot-s {part!r} is not S or TYPE=S with S in seconds.",
                    "pass --boot-s 90, or --boot-s 90,g4dn.xlarge=120 for one type's own delay.",
                ) from None
            problem = limits.BOOT_S.problem(seconds)
            if problem is not None:
                raise ConfigError(
                    f"--boot-s {part!r}: {seconds:g} {problem} (docs/limits.md).",
                    f"give boot delays as {limits.BOOT_S.describe()}, e.g. --boot-s 90.",
                )
            if sep:
                per_type[name.strip()] = seconds
            else:
                default = seconds
        return (default, per_type)


def autoscale_options(func: FC) -> FC:
    """--autoscaler and what it runs with (the cloud's boot and billing, the tick, the budget)."""
    options = [
        click.option(
            "--autoscaler",
            default=None,
            help="Let an autoscaler rent the pool as the trace runs (kairos, static-peak, "
            "static-mean, static-best, ray-serve, skyserve, oracle).",
        ),
        click.option(
            "--tick-s",
            type=bounded(limits.TICK_S),
            default=None,
            help=f"Seconds between autoscaler decisions [default: {TIMELINE.tick_s:g}].",
        ),
        click.option(
            "--boot-s",
            type=BootDelays(),
            default=None,
            help="Boot delay of a new instance: S, or S,TYPE=S,... per type "
            f"[default: {CLOUD.default_boot_s:g}].",
        ),
        click.option(
            "--min-charge-s",
            type=bounded(limits.MIN_CHARGE_S),
            default=None,
            help=f"Least seconds billed per instance [default: {CLOUD.min_charge_s:g}].",
        ),
        click.option(
            "--budget-per-hr",
            type=bounded(limits.BUDGET_PER_HR),
            default=None,
            help="Most the autoscaler may rent, $/h.",
        ),
        click.option(
            "--plot",
            "plot_path",
            type=output_file(".png"),
            default=None,
            help="Write the timeline (rate, pool, cost, p99 per minute) to FILE.png.",
        ),
    ]
    for opt in reversed(options):
        func = opt(func)
    return func


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE


class FixedPool:
    """The autoscaler of a plain replay: the --pool given, all along."""

    name = "fixed"

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def decide(self, obs: Observation) -> Pool | None:
        return self.pool


@contextmanager
def replay_progress(total: int) -> Iterator[Any]:
    """A bar on a terminal (stderr) for a replay; nothing when stderr is not a terminal."""
    with progress_bar(sys.stderr.isatty(), "replay (queries)", total) as bar:
        yield bar


def report_timeline(
    result: TimelineResult, model: str, plot_path: str | None, as_json: bool
) -> None:
    """The autoscaled replay's table or JSON, and its plot."""
    m = result.minutes
    has_queries = m.rate_qps > 0
    shares = np.where(has_queries, m.qos_share, np.inf)
    worst = int(np.argmin(shares))
    bad = int(np.count_nonzero(has_queries & (m.qos_share < GOOD_MINUTE)))
    hours = (result.end_s - result.start_s) / 3600.0
    payload: dict[str, Any] = {
        "model": model,
        "autoscaler": result.autoscaler,
        "policy": result.policy,
        "qos_ms": result.qos_ms,
        "queries": result.queries,
        "duration_s": result.end_s - result.start_s,
        "cost_dollars": round(result.cost_dollars, 4),
        "mean_cost_per_hr": round(result.cost_dollars / hours, 4) if hours > 0 else None,
        "qos_share": result.qos_share,
        "unanswered": result.unanswered,
        "scale_actions": result.scale_actions,
        "minutes": len(m),
        "worst_minute": worst,
        "worst_minute_qos_share": float(m.qos_share[worst]),
        "minutes_below_99": bad,
    }
    if plot_path is not None:
        from kairos.plots.timeline import plot_timeline

        plot_timeline(result, plot_path, f"{model}, QoS {result.qos_ms:g} ms")
    if as_json:
        actions = [
            {"time_s": a.time_s, "from": str(a.from_pool), "to": str(a.to_pool)}
            for a in result.actions
        ]
        emit_json(payload | {"actions": actions})
        return
    rows = [
        ["model", model],
        ["autoscaler", result.autoscaler],
        ["policy", result.policy],
        ["queries", f"{result.queries:,}"],
        ["duration", f"{payload['duration_s'] / 60:.1f} min"],
        ["cost", f"${result.cost_dollars:,.2f}"],
        ["mean cost rate", f"${payload['mean_cost_per_hr'] or 0:,.3f}/h"],
        ["within QoS", percent_down(result.qos_share, 2)],
        ["unanswered", f"{result.unanswered:,}"],
        ["worst minute", f"{percent_down(m.qos_share[worst])} (minute {worst})"],
        ["minutes below 99%", f"{bad} of {int(has_queries.sum())}"],
        ["scale actions", str(result.scale_actions)],
    ]
    click.echo(table(rows, ["metric", "value"]))
    click.echo(
        f"  within QoS: share of all {result.queries:,} queries answered within "
        f"{result.qos_ms:g} ms (unanswered ones are misses), truncated, never rounded up."
    )
    if plot_path is not None:
        click.echo(f"  timeline plot: {plot_path}")


def cells_options(func: FC) -> FC:
    """``--cells N`` and ``--splitter``: the same pool cut into N cells (docs/cells.md)."""
    func = click.option(
        "--splitter",
        type=click.Choice(SPLITTERS.names()),
        default=DEFAULT_CELLS.splitter,
        show_default=True,
        help="The front balancer's policy in front of the cells (with --cells).",
    )(func)
    return click.option(
        "--cells",
        type=click.IntRange(min=1),
        default=None,
        help="Also cut the pool into N cells, each its own central queue, behind a front "
        "splitter, and report them beside the single central queue.",
    )(func)


def policy_option(default: str = "fcfs") -> Callable[[FC], FC]:
    return click.option(
        "--policy",
        default=default,
        show_default=True,
        help=f"Distribution policy ({', '.join(policy_names())}).",
    )


@click.command()
@scenario_options
@click.option(
    "--pool", "pool_text", default=REFERENCE_POOL, show_default=True, help="Pool as TYPE=N,TYPE=N."
)
@policy_option()
@policy_options_option
@click.option(
    "--rate-qps", type=bounded(limits.RATE_QPS), default=None, help="Poisson arrival rate."
)
@click.option(
    "--trace",
    "trace_path",
    type=click.Path(),
    default=None,
    help="Replay a trace CSV (arrival_s,batch_size) instead of Poisson arrivals.",
)
@click.option(
    "--queries",
    type=bounded(limits.QUERIES),
    default=20000,
    show_default=True,
    help="Poisson arrivals to simulate (a trace sets its own count).",
)
@click.option("--seed", type=bounded(limits.SEED), default=0, show_default=True)
@autoscale_options
@cells_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def simulate(
    model,
    qos_ms,
    batch_mix,
    profiles_path,
    prices_path,
    pool_text,
    policy,
    policy_option_texts,
    rate_qps,
    trace_path,
    queries,
    seed,
    autoscaler,
    tick_s,
    boot_s,
    min_charge_s,
    budget_per_hr,
    plot_path,
    cells,
    splitter,
    as_json,
):
    """Simulate POOL under Poisson load at RATE_QPS (or a --trace) and report latency and QoS.

    With --autoscaler NAME the pool follows the traffic instead: the autoscaler rents and
    returns instances every --tick-s, new ones serve after --boot-s, and the report is the
    cost over the trace and the share of queries within QoS, overall and per minute.
    """
    scenario = build_scenario(model, qos_ms, batch_mix, profiles_path, prices_path)
    extras = {"--tick-s": tick_s, "--boot-s": boot_s, "--min-charge-s": min_charge_s}
    extras |= {"--budget-per-hr": budget_per_hr, "--plot": plot_path}
    if autoscaler is None:
        given = [k for k, v in extras.items() if v is not None]
        if given:
            raise ConfigError(
                f"{given[0]} applies to an autoscaled replay, and no --autoscaler was given.",
                f"add --autoscaler NAME (e.g. kairos), or drop {given[0]}.",
            )
    elif _given(click.get_current_context(), "pool_text"):
        raise ConfigError(
            f"--pool {pool_text} and --autoscaler {autoscaler} both set the pool.",
            "drop --pool (the autoscaler rents the pool), or drop --autoscaler.",
        )
    else:
        AUTOSCALERS.check(autoscaler)
        if cells is not None:
            raise ConfigError(
                f"--cells {cells} applies to a fixed pool, and --autoscaler {autoscaler} "
                "resizes it.",
                "drop --cells, or drop --autoscaler.",
            )
    if trace_path is not None and rate_qps is not None:
        raise ConfigError(
            f"--rate-qps {rate_qps:g} and --trace {trace_path} both set the arrivals.",
            "pass --rate-qps for Poisson arrivals or --trace to replay a trace, not both.",
        )
    if trace_path is not None:
        stream = load_trace(trace_path, scenario.mix, seed)
        largest = int(stream.batch_size.max())
        check_batches_within(
            largest, f"trace {trace_path}", scenario.profiles.max_batch, f"model {model!r}"
        )
        queries = len(stream)
        rate_qps = queries / max(float(stream.arrival_s[-1] - stream.arrival_s[0]), 1e-9)
    elif rate_qps is None:
        raise ConfigError(
            "simulate needs an arrival process.",
            "pass --rate-qps R for Poisson arrivals or --trace FILE.csv to replay a trace.",
        )
    else:
        stream = poisson_stream(rate_qps, queries, scenario.mix, np.random.default_rng(seed))
    options = parse_policy_options(policy_option_texts)
    if autoscaler is not None:
        cloud = CloudSettings(
            default_boot_s=boot_s[0] if boot_s else CLOUD.default_boot_s,
            boot_s=boot_s[1] if boot_s else CLOUD.boot_s,
            min_charge_s=CLOUD.min_charge_s if min_charge_s is None else min_charge_s,
        )
        settings = TimelineSettings(tick_s=TIMELINE.tick_s if tick_s is None else tick_s)
        context = AutoscaleContext(scenario, policy, cloud, budget_per_hr, stream)
        scaler = AUTOSCALERS.get(autoscaler)(context)
        with replay_progress(len(stream)) as bar:
            timeline = simulate_timeline(
                scenario,
                scaler,
                policy,
                stream,
                cloud=cloud,
                settings=settings,
                seed=seed,
                policy_options=options,
                progress=bar.update,
            )
        report_timeline(timeline, model, plot_path, as_json)
        return
    pool = parse_pool(scenario, pool_text)
    if trace_path is not None:
        with replay_progress(len(stream)) as bar:
            records = simulate_timeline(
                scenario,
                FixedPool(pool),
                policy,
                stream,
                seed=seed,
                policy_options=options,
                progress=bar.update,
            ).records
    else:
        records = run_simulation(
            scenario, pool, policy, stream, seed=seed, policy_options=options
        ).records
    m = records.metrics(scenario.qos_ms, default_warmup(queries) if queries > 2000 else 0)
    payload = {
        "model": model,
        "pool": str(pool),
        "policy": policy,
        "qos_ms": scenario.qos_ms,
        "cost_per_hr": round(pool.cost_per_hr(scenario.prices), 4),
        "rate_qps": rate_qps,
        "queries": queries,
        "throughput_qps": m.throughput_qps,
        "p50_ms": m.p50_ms,
        "p99_ms": m.p99_ms,
        "qos_met_fraction": m.qos_met_fraction,
    }
    if cells is not None:
        celled = simulate_cells(
            scenario,
            cut(scenario, pool, cells),
            policy,
            stream,
            seed=seed,
            policy_options=options,
            splitter=splitter,
        ).result.records.metrics(scenario.qos_ms, default_warmup(queries) if queries > 2000 else 0)
        payload |= {"cells": cells, "splitter": splitter}
        payload |= {f"celled_{k}": getattr(celled, k) for k in CELLED_METRICS}
    if as_json:
        emit_json(payload | {"p90_ms": m.p90_ms, "utilisation": m.utilisation})
        return
    rows = [[k, f"{v:.4g}" if isinstance(v, float) else str(v)] for k, v in payload.items()]
    rows += [[f"utilisation[{t}]", f"{u:.1%}"] for t, u in m.utilisation.items()]
    click.echo(table(rows, ["metric", "value"]))


@click.command()
@scenario_options
@click.option("--pool", "pool_text", default=REFERENCE_POOL, show_default=True)
@policy_option()
@policy_options_option
@click.option(
    "--queries",
    type=bounded(limits.TRIAL_QUERIES),
    default=DEFAULT_QUERIES,
    show_default=True,
    help="Measured queries per trial (plus a 10% warm-up).",
)
@click.option(
    "--precision",
    type=bounded(limits.PRECISION),
    default=DEFAULT_PRECISION,
    show_default=True,
    help="Stop when the passing and failing rates are within this fraction.",
)
@click.option("--seed", type=bounded(limits.SEED), default=0, show_default=True)
@cells_options
@click.option("--json", "as_json", is_flag=True)
def capacity(
    model,
    qos_ms,
    batch_mix,
    profiles_path,
    prices_path,
    pool_text,
    policy,
    policy_option_texts,
    queries,
    precision,
    seed,
    cells,
    splitter,
    as_json,
):
    """Allowable throughput of POOL: highest rate with 99% of queries within QoS.

    With --cells N the same instances are also cut into N cells behind a front --splitter
    (docs/cells.md): allowable_qps is then the celled service's, beside the central queue's.
    """
    scenario = build_scenario(model, qos_ms, batch_mix, profiles_path, prices_path)
    pool = parse_pool(scenario, pool_text)
    if cells is not None:
        measurement = Measurement(queries=queries, precision=precision, seed=seed)
        options = parse_policy_options(policy_option_texts)
        _capacity_cells(scenario, pool, policy, options, measurement, cells, splitter, as_json)
        return
    with progress_bar(not as_json, "capacity search") as bar:
        res = allowable_throughput(
            scenario,
            pool,
            policy,
            queries=queries,
            seed=seed,
            precision=precision,
            policy_options=parse_policy_options(policy_option_texts),
            progress=lambda t: bar.update(1),
        )
    payload = {
        "model": model,
        "pool": str(pool),
        "policy": policy,
        "qos_ms": scenario.qos_ms,
        "cost_per_hr": round(pool.cost_per_hr(scenario.prices), 4),
        "allowable_qps": res.allowable_qps,
    }
    if as_json:
        emit_json(
            payload
            | {
                "reason": res.reason,
                "trials": len(res.trials),
                "p99_ms": res.metrics.p99_ms if res.metrics else None,
            }
        )
        return
    rows = [[k, f"{v:.4g}" if isinstance(v, float) else str(v)] for k, v in payload.items()]
    if res.metrics:
        rows.append(["p99_ms at allowable", f"{res.metrics.p99_ms:.1f}"])
    if res.reason:
        rows.append(["reason", res.reason])
    click.echo(table(rows, ["metric", "value"]))


def _capacity_cells(
    scenario: Scenario,
    pool: Pool,
    policy: str,
    options: dict[str, Any] | None,
    measurement: Measurement,
    cells: int,
    splitter: str,
    as_json: bool,
) -> None:
    """``capacity --cells``: the celled service's allowable throughput beside the central
    queue's, both with the same search and seeded streams."""
    parts = cut(scenario, pool, cells)
    with progress_bar(not as_json, "capacity search") as bar:
        central = allowable_throughput(
            scenario,
            pool,
            policy,
            queries=measurement.queries,
            seed=measurement.seed,
            precision=measurement.precision,
            policy_options=options,
            progress=lambda t: bar.update(1),
        )
        celled = measure_cells(
            scenario,
            pool,
            cells,
            policy,
            measurement,
            splitter=splitter,
            policy_options=options,
            guess_qps=central.allowable_qps or None,
        )
    ratio = celled.allowable_qps / central.allowable_qps if central.allowable_qps else None
    payload = {
        "model": scenario.model,
        "pool": str(pool),
        "policy": policy,
        "qos_ms": scenario.qos_ms,
        "cost_per_hr": round(pool.cost_per_hr(scenario.prices), 4),
        "cells": cells,
        "splitter": splitter,
        "allowable_qps": celled.allowable_qps,
        "central_allowable_qps": central.allowable_qps,
        "celled_over_central": ratio,
    }
    if as_json:
        emit_json(
            payload
            | {
                "cell_pools": [str(c) for c in parts],
                "reason": celled.reason,
                "p99_ms": celled.metrics.p99_ms if celled.metrics else None,
            }
        )
        return
    rows = [[k, f"{v:.4g}" if isinstance(v, float) else str(v)] for k, v in payload.items()]
    rows += [[f"cell {k}", str(c)] for k, c in enumerate(parts)]
    if celled.reason:
        rows.append(["reason", celled.reason])
    click.echo(table(rows, ["metric", "value"]))


COMMANDS = [simulate, capacity]
