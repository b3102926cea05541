"""``kairos serve``, ``kairos worker``, ``kairos loadgen`` and ``kairos demo-live``."""

from __future__ import annotations

import click

from kairos import limits
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
from kairos.cli.simulate import REFERENCE_POOL
from kairos.distributor import policy_class, policy_names
from kairos.errors import ConfigError
from kairos.runtime.aio import parse_cpus
from kairos.runtime.worker import worker_command as worker
from kairos.workload import parse_mix


def _default_policy() -> str:
    return "kairos" if "kairos" in policy_names() else "fcfs"


def _parse_workers(text: str) -> tuple[str, ...] | None:
    if text == "local":
        return None
    addresses = tuple(a.strip() for a in text.split(",") if a.strip())
    bad = [a for a in addresses if not a.rpartition(":")[2].isdigit()]
    if not addresses or bad:
        raise ConfigError(
            f"--workers {text!r} is not 'local' or a list of HOST:PORT ({bad or 'empty'}).",
            "write e.g. --workers 127.0.0.1:7001,127.0.0.1:7002 (one per instance, pool order).",
        )
    return addresses


@click.command()
@scenario_options
@click.option(
    "--pool", "pool_text", default=REFERENCE_POOL, show_default=True, help="Pool as TYPE=N,TYPE=N."
)
@click.option("--policy", default=None, help="Distribution policy (default: kairos if present).")
@policy_options_option
@click.option("--host", type=HOST, default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", type=bounded(limits.PORT), default=8000, show_default=True, help="0 = any free port."
)
@click.option(
    "--workers",
    "workers_text",
    type=WORKERS,
    default="local",
    show_default=True,
    help="'local' starts replay/model workers here; or HOST:PORT,... in pool order.",
)
@click.option(
    "--mode",
    type=click.Choice(["replay", "model"]),
    default="replay",
    show_default=True,
    help="Mode of local workers.",
)
@click.option(
    "--worker-hosting",
    type=click.Choice(["type", "instance"]),
    default="type",
    show_default=True,
    help="Local replay workers: one process per instance type (each instance still its own "
    "thread, socket, connection and RNG; ~35% less worker CPU) or one per instance. Model "
    "workers always get a process each. See docs/runtime.md.",
)
@click.option("--handler", type=HANDLER, default=None, help="module:callable run by local workers.")
@click.option(
    "--router-cpus",
    default=None,
    help="Pin the router to these cores, e.g. 0 (Linux; see docs/runtime.md).",
)
@click.option("--worker-cpus", default=None, help="Pin local workers to these cores, e.g. 1.")
@click.option(
    "--transport",
    type=click.Choice(["tcp", "grpc"]),
    default="tcp",
    show_default=True,
    help="Router-to-worker carrier (framed TCP is ~3x cheaper).",
)
@click.option(
    "--time-scale",
    type=bounded(limits.TIME_SCALE),
    default=1.0,
    show_default=True,
    help="Replay service times x this (0 = zero latency); the clock is scaled back.",
)
@click.option(
    "--max-queue",
    type=bounded(limits.MAX_QUEUE),
    default=1000,
    show_default=True,
    help="Queued queries beyond which requests get HTTP 503.",
)
@click.option(
    "--max-body-bytes",
    type=bounded(limits.MAX_BODY_BYTES),
    default=16 * 1024 * 1024,
    show_default=True,
    help="Larger request bodies get HTTP 400.",
)
@click.option(
    "--api-token",
    envvar="KAIROS_API_TOKEN",
    default=None,
    help="Require 'Authorization: Bearer TOKEN' (env KAIROS_API_TOKEN).",
)
@click.option(
    "--drain-timeout-s",
    type=bounded(limits.DRAIN_TIMEOUT_S),
    default=30.0,
    show_default=True,
    help="On SIGTERM, wait this long for accepted queries before answering them 503.",
)
@click.option(
    "--timeout-floor-s",
    type=bounded(limits.TIMEOUT_FLOOR_S),
    default=2.0,
    show_default=True,
    help="Per-query hang timeout: this + 5 x the profiled p99 service time.",
)
@click.option(
    "--overhead-factor",
    type=bounded(limits.OVERHEAD_FACTOR),
    default=3.0,
    show_default=True,
    help="Policy sees this x the p95 worker round-trip overhead as extra time per query (0 = off).",
)
@click.option("--seed", type=bounded(limits.SEED), default=0, show_default=True)
def serve(
    model,
    qos_ms,
    batch_mix,
    profiles_path,
    prices_path,
    pool_text,
    policy,
    policy_option_texts,
    host,
    port,
    workers_text,
    mode,
    worker_hosting,
    handler,
    router_cpus,
    worker_cpus,
    transport,
    time_scale,
    max_queue,
    max_body_bytes,
    api_token,
    drain_timeout_s,
    timeout_floor_s,
    overhead_factor,
    seed,
):
    """Serve MODEL on POOL behind one KServe v2 HTTP endpoint (Ctrl-C drains and stops)."""
    from kairos.runtime.aio import run_event_loop
    from kairos.runtime.router import RouterConfig, run_router

    scenario = build_scenario(model, qos_ms, batch_mix, profiles_path, prices_path)
    pool = parse_pool(scenario, pool_text)
    name = policy or _default_policy()
    policy_class(name)  # an unknown name fails here, before any worker starts
    if host not in ("127.0.0.1", "localhost", "::1") and not api_token:
        click.echo(f"warning: binding {host} without --api-token exposes the endpoint to "
                   "anyone who can reach it", err=True)  # fmt: skip
    cfg = RouterConfig(
        model=scenario.model, pool=pool, policy=name, host=host, port=port,
        workers=_parse_workers(workers_text), worker_mode=mode, handler=handler,
        worker_hosting=worker_hosting, transport=transport,
        router_cpus=parse_cpus(router_cpus), worker_cpus=parse_cpus(worker_cpus),
        time_scale=time_scale, max_queue=max_queue, api_token=api_token,
        max_body_bytes=max_body_bytes, drain_timeout_s=drain_timeout_s,
        timeout_floor_s=timeout_floor_s, seed=seed,
        profiles_path=profiles_path,
        policy_options=tuple(parse_policy_options(policy_option_texts).items()),
        overhead_factor=overhead_factor,
    )  # fmt: skip
    run_event_loop(run_router(cfg, scenario))


@click.command()
@click.option("--url", default="http://127.0.0.1:8000", show_default=True)
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
@click.option("--precision", type=bounded(limits.PRECISION), default=0.05, show_default=True)
@click.option(
    "--tensors",
    type=click.Choice(["binary", "json"]),
    default="binary",
    show_default=True,
    help="Send tensors as raw bytes (KServe binary tensor data extension, as Triton's clients "
    "do) or as JSON 'data' lists.",
)
@click.option("--json", "as_json", is_flag=True)
def loadgen(
    url, model, rate_qps, duration_s, batch_mix, seed, api_token, find_capacity, precision,
    tensors, as_json,
):  # fmt: skip
    """Open-loop Poisson load against a KServe v2 endpoint; report latency and QoS."""
    from kairos.runtime.aio import run_event_loop
    from kairos.runtime.loadgen import LoadSpec, run_load
    from kairos.runtime.loadgen import find_capacity as search

    mix = parse_mix(batch_mix)
    if rate_qps is None and not find_capacity:
        raise ConfigError("--rate-qps is missing.", "pass --rate-qps R or --find-capacity.")
    spec = LoadSpec(url, model, rate_qps or 1.0, duration_s, mix, seed=seed, api_token=api_token,
                    binary=tensors == "binary")  # fmt: skip
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
    report = run_event_loop(run_load(spec))
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
            "lower --rate-qps, grow the pool, or see the router's log for the errors.",
        )


def fail_check(message: str, fix: str) -> None:
    """A load run that completed but failed its check: one line, exit status 1 (not 2, which
    is bad input)."""
    click.echo(f"error: {message} To fix: {fix}", err=True)
    raise click.exceptions.Exit(1)


@click.command("demo-live")
@click.option("--model", "-m", default="dien", show_default=True)
@click.option("--pool", "pool_text", default="g4dn.xlarge=1,r5n.large=3", show_default=True)
@click.option(
    "--rate-qps",
    type=bounded(limits.RATE_QPS),
    default=None,
    help="Default: between the policies.",
)
@click.option("--duration-s", type=bounded(limits.DURATION_S), default=15.0, show_default=True)
@click.option("--time-scale", type=bounded(limits.TIME_SCALE), default=1.0, show_default=True)
@click.option("--seed", type=bounded(limits.SEED), default=0, show_default=True)
def demo_live(model, pool_text, rate_qps, duration_s, time_scale, seed):
    """Serve a small local pool under kairos, then fcfs, and compare them side by side."""
    from kairos.runtime.demo import run_live_demo

    run_live_demo(model, pool_text, rate_qps=rate_qps, duration_s=duration_s,
                  time_scale=time_scale, seed=seed, echo=click.echo)  # fmt: skip


COMMANDS = [serve, worker, loadgen, demo_live]
