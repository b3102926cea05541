"""``kairos serve`` and ``kairos loadgen``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import click

from kairos import limits
from kairos.aio import parse_cpus
from kairos.cli.common import (
    HANDLER,
    HOST,
    WORKERS,
    bounded,
    build_scenario,
    emit_json,
    parse_policy_options,
    parse_pool,
    policy_options_option,
    scenario_options,
    table,
)
from kairos.cli.simulate import CLOUD, REFERENCE_POOL, BootDelays
from kairos.client.loadgen import LIVE_PRECISION
from kairos.control.autoscale import AUTOSCALERS, AutoscaleContext
from kairos.control.headroom import PlanWatch
from kairos.control.live import LiveAutoscale, LiveSettings
from kairos.distributor import policy_names
from kairos.errors import ConfigError
from kairos.protocol.api import DEFAULT_URL
from kairos.serving.cells.config import BALANCES, CellSettings
from kairos.serving.pool.base import POOL_BACKENDS
from kairos.serving.pool.supervisor import HOSTINGS
from kairos.serving.pool.transport import TRANSPORTS
from kairos.serving.ray.placement import RAY_PLACEMENTS
from kairos.serving.router.config import LOG_FORMATS, RouterConfig
from kairos.serving.settings import (
    DispatchSettings,
    HttpSettings,
    PoolSettings,
    RaySettings,
    Settings,
)
from kairos.serving.worker.service import WORKER_MODES
from kairos.workload import parse_mix

F = TypeVar("F", bound=Callable[..., Any])


def _parse_workers(text: str) -> tuple[str, ...] | None:
    """The addresses of ``--workers`` (None: local), whose text the WORKERS type checked."""
    if text == "local":
        return None
    return tuple(a.strip() for a in text.split(",") if a.strip())


def _setting(settings: type[Settings], name: str, **kwargs: Any) -> Callable[[F], F]:
    """The option of setting ``name``: its flag and its default as ``settings`` declares
    them (``kwargs`` may give another default where the command line spells it otherwise)."""
    kwargs.setdefault("default", settings.default(name))
    return click.option(settings.option(name), **kwargs)


@click.command()
@scenario_options
@click.option(
    "--pool", "pool_text", default=REFERENCE_POOL, show_default=True, help="Pool as TYPE=N,TYPE=N."
)
@_setting(
    RouterConfig,
    "policy",
    type=click.Choice(policy_names()),
    show_default=True,
    help="Distribution policy.",
)
@policy_options_option
@_setting(HttpSettings, "host", type=HOST, show_default=True, help="Address to bind.")
@_setting(HttpSettings, "port", type=bounded(limits.PORT), show_default=True, help="0 = any.")
@_setting(
    PoolSettings,
    "backend",
    type=click.Choice(POOL_BACKENDS.names()),
    show_default=True,
    help="Where the pool's workers run: local processes (or --workers addresses), or Ray "
    "actors on nodes of each instance type (docs/ray.md).",
)
@_setting(
    RaySettings,
    "address",
    help="--backend ray: the Ray cluster (HOST:6379, or auto on a node of it); without it a "
    "local Ray instance is started that offers every instance type.",
)
@_setting(
    RaySettings,
    "placement",
    type=click.Choice(RAY_PLACEMENTS.names()),
    show_default=True,
    help="--backend ray: nodes of type T offer the resource kairos/T, or carry the label "
    "kairos.io/instance-type=T.",
)
@click.option(
    "--detach",
    is_flag=True,
    help="--backend ray --address: run the router as a detached actor on the head node and "
    "return (see kairos status, scale, stop).",
)
@_setting(
    PoolSettings,
    "addresses",
    type=WORKERS,
    default="local",
    show_default=True,
    help="'local' starts replay/model workers here; or HOST:PORT,... in pool order.",
)
@_setting(
    PoolSettings,
    "mode",
    type=click.Choice(WORKER_MODES.names()),
    show_default=True,
    help="Mode of local workers.",
)
@_setting(
    PoolSettings,
    "hosting",
    type=click.Choice(HOSTINGS.names()),
    show_default=True,
    help="Local replay workers: one process per instance type (each instance still its own "
    "thread, socket, connection and RNG; ~35% less worker CPU) or one per instance. Model "
    "workers always get a process each. See docs/runtime.md.",
)
@_setting(PoolSettings, "handler", type=HANDLER, help="module:callable run by local workers.")
@_setting(
    RouterConfig,
    "router_cpus",
    default=None,
    help="Pin the router to these cores, e.g. 0 (Linux; see docs/runtime.md).",
)
@_setting(PoolSettings, "cpus", default=None, help="Pin local workers to these cores, e.g. 1.")
@_setting(
    PoolSettings,
    "transport",
    type=click.Choice(TRANSPORTS.names()),
    show_default=True,
    help="Router-to-worker carrier (framed TCP is ~3x cheaper).",
)
@_setting(
    DispatchSettings,
    "time_scale",
    type=bounded(limits.TIME_SCALE),
    show_default=True,
    help="Replay service times x this (0 = zero latency); the clock is scaled back.",
)
@_setting(
    HttpSettings,
    "max_queue",
    type=bounded(limits.MAX_QUEUE),
    show_default=True,
    help="Queued queries beyond which requests get HTTP 503.",
)
@_setting(
    HttpSettings,
    "max_body_bytes",
    type=bounded(limits.MAX_BODY_BYTES),
    show_default=True,
    help="Larger request bodies get HTTP 400.",
)
@_setting(
    HttpSettings,
    "api_token",
    envvar="KAIROS_API_TOKEN",
    help="Require 'Authorization: Bearer TOKEN' (env KAIROS_API_TOKEN).",
)
@_setting(
    DispatchSettings,
    "drain_timeout_s",
    type=bounded(limits.DRAIN_TIMEOUT_S),
    show_default=True,
    help="On SIGTERM, wait this long for accepted queries before answering them 503.",
)
@_setting(
    DispatchSettings,
    "timeout_floor_s",
    type=bounded(limits.TIMEOUT_FLOOR_S),
    show_default=True,
    help="Per-query hang timeout: this + "
    f"{DispatchSettings.default('timeout_p99_multiple'):g} x the profiled p99 service time.",
)
@_setting(
    DispatchSettings,
    "max_attempts",
    type=bounded(limits.MAX_ATTEMPTS),
    show_default=True,
    help="Fail a query (502) once it may have caused this many worker failures.",
)
@_setting(
    DispatchSettings,
    "overhead_factor",
    type=bounded(limits.OVERHEAD_FACTOR),
    show_default=True,
    help="Policy sees this x the p95 worker round-trip overhead as extra time per query (0 = off).",
)
@_setting(
    DispatchSettings,
    "pipeline",
    is_flag=True,
    help="Model workers over tcp: send an instance's next query once its current one has run "
    "its mean service time, to wait at the worker (docs/runtime.md).",
)
@_setting(
    RouterConfig,
    "log_format",
    type=click.Choice(LOG_FORMATS.names()),
    show_default=True,
    help="Router log lines on stderr: timestamped text, or one JSON object per line.",
)
@_setting(
    DispatchSettings,
    "traffic_window_s",
    type=bounded(limits.TRAFFIC_WINDOW_S),
    show_default=True,
    help="Seconds of traffic (profile time) behind GET /v2/traffic and the headroom metrics.",
)
@_setting(RouterConfig, "seed", type=bounded(limits.SEED), show_default=True)
@_setting(
    LiveSettings,
    "autoscaler",
    help="Let an autoscaler resize the pool as traffic moves, every --autoscale-tick-s "
    "(kairos, ray-serve or skyserve; --pool is where it starts). See docs/autoscale.md.",
)
@_setting(
    LiveSettings,
    "tick_s",
    type=bounded(limits.TICK_S),
    show_default=True,
    help="--autoscale: seconds (profile time) between decisions.",
)
@_setting(
    LiveSettings,
    "budget_per_hr",
    type=bounded(limits.BUDGET_PER_HR),
    help="--autoscale: most the autoscaler may rent, $/h.",
)
@click.option(
    "--boot-s",
    type=BootDelays(),
    default=None,
    help="--autoscale: the boot delay it plans for (its forecast looks this far ahead): S, or "
    f"S,TYPE=S,... per type [default: {CLOUD.default_boot_s:g}]. Live, instances join when "
    "their workers answer.",
)
@_setting(
    CellSettings,
    "cells",
    type=int,
    help="Cut the pool into N cells, each served by its own router process with its own "
    "workers (with --backend ray: a Ray actor on a router node), behind HAProxy on "
    "--host/--port, weighted by each cell's capacity (docs/cells.md).",
)
@_setting(
    CellSettings,
    "balancer_config",
    help="--cells: write the balancer's configuration (HAProxy) to FILE for a balancer you "
    "run, instead of starting one.",
)
@_setting(
    CellSettings,
    "balance",
    type=click.Choice(BALANCES.names()),
    show_default=True,
    help="--cells: how the balancer picks a cell (both weigh cells by capacity).",
)
@click.option(
    "--min-charge-s",
    type=bounded(limits.MIN_CHARGE_S),
    default=None,
    help="--autoscale: least seconds billed per instance, for the cost it logs on stopping "
    f"[default: {CLOUD.min_charge_s:g}].",
)
def serve(
    model,
    qos_ms,
    batch_mix,
    profiles_path,
    prices_path,
    pool_text,
    detach,
    boot_s,
    min_charge_s,
    **_settings,
):
    """Serve MODEL on POOL behind one KServe v2 HTTP endpoint (Ctrl-C drains and stops)."""
    from kairos.aio import run_event_loop
    from kairos.serving.router.router import run_router

    scenario = build_scenario(model, qos_ms, batch_mix, profiles_path, prices_path)
    pool = parse_pool(scenario, pool_text)
    # Every option by its flag: each setting reads its own (RouterConfig.from_command_line).
    ctx = click.get_current_context()
    given = {flag: ctx.params[p.name] for p in ctx.command.params for flag in p.opts if p.name}
    host, api_token = given["--host"], given["--api-token"]
    if host not in ("127.0.0.1", "localhost", "::1") and not api_token:
        click.echo(
            f"warning: binding {host} without --api-token exposes the endpoint to "
            "anyone who can reach it",
            err=True,
        )
    # The options whose text the settings hold parsed.
    given["--workers"] = _parse_workers(given["--workers"])
    given["--router-cpus"] = parse_cpus(given["--router-cpus"])
    given["--worker-cpus"] = parse_cpus(given["--worker-cpus"])
    given["--policy-option"] = tuple(parse_policy_options(given["--policy-option"]).items())
    cfg = RouterConfig.from_command_line(given, scenario.model, pool)
    cfg.check()  # every bad setting fails here, before any worker starts
    control = _autoscale(ctx, given, scenario, cfg.policy, detach)
    cells = CellSettings.from_options(given)
    if cells.cells is not None or cells.balancer_config is not None:
        _serve_cells(cfg, scenario, pool, cells, control is not None, detach)
        return
    if detach:
        _detach(cfg, scenario)
        return
    run_event_loop(run_router(cfg, scenario, headroom=PlanWatch, control=control))


def _autoscale(ctx, given, scenario, policy, detach):
    """The control loop --autoscale asks for (None without it), built before any worker
    starts so that a bad setting fails first."""
    live = LiveSettings.from_options(given)
    cloud_given = {"--boot-s": given["--boot-s"], "--min-charge-s": given["--min-charge-s"]}
    if live.autoscaler is None:
        options = [LiveSettings.option("tick_s"), LiveSettings.option("budget_per_hr")]
        extras = [o for o in options if _from_command_line(ctx, o)]
        extras += [o for o, v in cloud_given.items() if v is not None]
        if extras:
            raise ConfigError(
                f"{extras[0]} applies to an autoscaled pool, and no --autoscale was given.",
                f"add --autoscale NAME (e.g. kairos), or drop {extras[0]}.",
            )
        return None
    if detach:
        raise ConfigError(
            "--autoscale does not run in a detached router yet.",
            "serve without --detach (the router and its autoscaler run in this process).",
        )
    AUTOSCALERS.check(live.autoscaler)
    boot = given["--boot-s"] or (CLOUD.default_boot_s, CLOUD.boot_s)
    min_charge = given["--min-charge-s"]
    cloud = replace(
        CLOUD,
        default_boot_s=boot[0],
        boot_s=boot[1],
        min_charge_s=CLOUD.min_charge_s if min_charge is None else min_charge,
    )
    context = AutoscaleContext(scenario, policy, cloud, live.budget_per_hr, trace=None)
    return LiveAutoscale(AUTOSCALERS.get(live.autoscaler)(context), live, cloud)


def _serve_cells(cfg, scenario, pool, cells, autoscaled, detach):
    """``serve --cells N``: N routers behind a balancer (kairos.serving.cells), as local
    processes or, with ``--backend ray``, as Ray actors on router nodes."""
    from kairos.aio import run_event_loop
    from kairos.serving.cells.balancer import haproxy_binary
    from kairos.serving.cells.cellset import run_cells
    from kairos.serving.cells.hosts import ROUTER_HOSTS
    from kairos.sim.celled import cut

    if cells.cells is None:
        raise ConfigError(
            "--balancer-config writes the balancer's configuration for cells, and no --cells "
            "was given.",
            "add --cells N (N routers behind the balancer), or drop --balancer-config.",
        )
    if autoscaled:
        raise ConfigError(
            "--cells does not run with --autoscale yet.",
            "serve the cells without it (kairos scale --cell K resizes a cell).",
        )
    if detach:
        raise ConfigError(
            "--cells does not run with --detach: the cell set (the balancer, and the routers' "
            "restarts) runs in this kairos serve process.",
            "drop --detach (with --backend ray the routers still run as Ray actors).",
        )
    if cfg.workers.addresses is not None:
        raise ConfigError(
            "--cells starts each cell's workers itself; --workers addresses are not supported "
            "with cells yet.",
            "drop --workers, or serve without --cells.",
        )
    ROUTER_HOSTS.check(cfg.workers.backend)
    pools = cut(scenario, pool, cells.cells)
    if cells.balancer_config is None:
        haproxy_binary(cells)  # where HAProxy is missing, say so before any router starts
    run_event_loop(run_cells(cfg, scenario, pools, cells, headroom=PlanWatch))


def _from_command_line(ctx, option):
    name = next(p.name for p in ctx.command.params if option in p.opts)
    return ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE


def _detach(cfg, scenario):
    from kairos.serving.ray.router import start_detached

    info = start_detached(cfg, scenario, headroom=PlanWatch)
    state = "ready" if info["ready"] else "not ready yet (instances still starting)"
    click.echo(f"kairos router {info['name']!r} runs detached on node {info['node']}, {state}")
    click.echo(f"  url:     {info['url']}")
    click.echo(f"  metrics: {info['metrics_url']}")
    click.echo(f"  status:  kairos status --address {cfg.ray.address}")
    click.echo(f"  stop:    kairos stop --address {cfg.ray.address}")


@click.command()
@click.option("--url", default=DEFAULT_URL, show_default=True)
@click.option("--model", "-m", required=True)
@click.option(
    "--rate-qps",
    type=bounded(limits.RATE_QPS),
    default=None,
    help="Poisson rate (profile time); with --find-capacity, the first guess.",
)
@click.option(
    "--duration-s",
    type=bounded(limits.DURATION_S),
    default=30.0,
    show_default=True,
    help=f"Seconds of load; rate x duration is at most {limits.MAX_LOADGEN_QUERIES:,} queries.",
)
@click.option(
    "--batch-mix", default="production", show_default=True, help="production | fixed:N | FILE.csv"
)
@click.option("--seed", type=bounded(limits.SEED), default=0, show_default=True)
@click.option("--api-token", envvar="KAIROS_API_TOKEN", default=None)
@click.option(
    "--find-capacity", is_flag=True, help="Search the highest rate with 99% of queries within QoS."
)
@click.option(
    "--precision", type=bounded(limits.PRECISION), default=LIVE_PRECISION, show_default=True
)
@click.option(
    "--tensors",
    type=click.Choice(["binary", "json"]),
    default="binary",
    show_default=True,
    help="Send tensors as raw bytes (KServe binary tensor data extension, as Triton's clients "
    "do) or as JSON 'data' lists.",
)
@click.option(
    "--trace",
    "trace_path",
    default=None,
    help="Replay this trace (arrival_s[,batch_size] CSV, e.g. from kairos trace) open-loop "
    "instead of Poisson load, at the router's --time-scale; with --duration-s, only its first "
    "seconds. Arrival-only traces draw batches from --batch-mix.",
)
@click.option("--json", "as_json", is_flag=True)
def loadgen(
    url,
    model,
    rate_qps,
    duration_s,
    batch_mix,
    seed,
    api_token,
    find_capacity,
    precision,
    tensors,
    trace_path,
    as_json,
):
    """Open-loop Poisson load (or a trace) against a KServe v2 endpoint; report latency and
    QoS."""
    from kairos.aio import run_event_loop
    from kairos.client.loadgen import LoadSpec, run_load
    from kairos.client.loadgen import find_capacity as search

    mix = parse_mix(batch_mix)
    if trace_path is not None:
        ctx = click.get_current_context()
        for option, name in (("--rate-qps", "rate_qps"), ("--find-capacity", "find_capacity")):
            if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
                raise ConfigError(
                    f"{option} and --trace both set the load.",
                    f"drop {option} (the trace sets the arrivals), or drop --trace.",
                )
        cut = ctx.get_parameter_source("duration_s") is click.core.ParameterSource.COMMANDLINE
        _replay_trace(
            url, model, trace_path, mix, seed, api_token, tensors, as_json, cut and duration_s
        )
        return
    if rate_qps is None and not find_capacity:
        raise ConfigError("--rate-qps is missing.", "pass --rate-qps R or --find-capacity.")
    spec = LoadSpec(
        url,
        model,
        rate_qps or 1.0,
        duration_s,
        mix,
        seed=seed,
        api_token=api_token,
        binary=tensors == "binary",
    )
    if find_capacity:

        def show(t):
            if not as_json:
                click.echo(
                    f"  trial {t.rate_qps:8.1f} qps: within QoS {t.qos_met_fraction:.2%}"
                    f", p99 {t.p99_ms:.1f} ms -> {'pass' if t.passed else 'fail'}"
                )

        res = run_event_loop(search(spec, precision=precision, guess_qps=rate_qps, progress=show))
        if as_json:
            emit_json(res.as_dict())
        else:
            click.echo(
                f"live allowable throughput: {res.allowable_qps:.1f} qps ({len(res.trials)} trials)"
            )
        if res.allowable_qps <= 0:  # the check failed at every rate tried: exit status 1
            fail_check(
                "no rate tried passed (99% of queries within QoS).",
                "grow the pool, relax --qos-ms on the router, or check its workers are up.",
            )
        return
    _show_report(run_event_loop(run_load(spec)), as_json)


def _replay_trace(url, model, path, mix, seed, api_token, tensors, as_json, duration_s):
    """``loadgen --trace``: the trace's arrivals, open-loop (``client.loadgen.replay_trace``)."""
    from kairos.aio import run_event_loop
    from kairos.client.loadgen import replay_trace
    from kairos.workload import load_trace

    stream = load_trace(path, mix, seed)
    report = run_event_loop(
        replay_trace(
            url,
            model,
            stream,
            seed=seed,
            api_token=api_token,
            binary=tensors == "binary",
            duration_s=duration_s or None,
        )
    )
    _show_report(
        report,
        as_json,
        "grow the pool (or serve with --autoscale), or see the router's log for the errors.",
    )


def _show_report(report, as_json, fix=None):
    if as_json:
        emit_json(report.as_dict())
    else:
        rows = [
            [k, f"{v:.4g}" if isinstance(v, float) else str(v)] for k, v in report.as_dict().items()
        ]
        click.echo(table(rows, ["metric", "value"]))
    if not report.passed:  # a run that failed its check exits with status 1
        fail_check(
            f"the run {report.verdict()}.",
            fix or "lower --rate-qps, grow the pool, or see the router's log for the errors.",
        )


def fail_check(message: str, fix: str) -> None:
    """A load run that completed but failed its check: one line, exit status 1 (not 2, which
    is bad input)."""
    click.echo(f"error: {message} To fix: {fix}", err=True)
    raise click.exceptions.Exit(1)


COMMANDS = [serve, loadgen]
