"""``kairos simulate`` and ``kairos capacity``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
import numpy as np

from kairos import limits
from kairos.cli.common import (
    bounded,
    build_scenario,
    emit_json,
    parse_policy_options,
    parse_pool,
    policy_options_option,
    progress_bar,
    scenario_options,
    table,
)
from kairos.distributor import policy_names
from kairos.errors import ConfigError
from kairos.sim.capacity import (
    DEFAULT_PRECISION,
    DEFAULT_QUERIES,
    allowable_throughput,
    default_warmup,
)
from kairos.sim.engine import simulate as run_simulation
from kairos.workload import check_batches_within, load_trace, poisson_stream

FC = TypeVar("FC", bound=Callable[..., Any])

REFERENCE_POOL = "g4dn.xlarge=2,r5n.large=9"


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
    as_json,
):
    """Simulate POOL under Poisson load at RATE_QPS and report latency and QoS."""
    scenario = build_scenario(model, qos_ms, batch_mix, profiles_path, prices_path)
    pool = parse_pool(scenario, pool_text)
    if trace_path is not None and rate_qps is not None:
        raise ConfigError(
            f"--rate-qps {rate_qps:g} and --trace {trace_path} both set the arrivals.",
            "pass --rate-qps for Poisson arrivals or --trace to replay a trace, not both.",
        )
    if trace_path is not None:
        stream = load_trace(trace_path)
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
    result = run_simulation(
        scenario,
        pool,
        policy,
        stream,
        seed=seed,
        policy_options=parse_policy_options(policy_option_texts),
    )
    m = result.records.metrics(scenario.qos_ms, default_warmup(queries) if queries > 2000 else 0)
    payload = {
        "model": model,
        "pool": str(pool),
        "policy": policy,
        "qos_ms": scenario.qos_ms,
        "cost_per_hr": round(result.cost_per_hr, 4),
        "rate_qps": rate_qps,
        "queries": queries,
        "throughput_qps": m.throughput_qps,
        "p50_ms": m.p50_ms,
        "p99_ms": m.p99_ms,
        "qos_met_fraction": m.qos_met_fraction,
    }
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
    as_json,
):
    """Allowable throughput of POOL: highest rate with 99% of queries within QoS."""
    scenario = build_scenario(model, qos_ms, batch_mix, profiles_path, prices_path)
    pool = parse_pool(scenario, pool_text)
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


COMMANDS = [simulate, capacity]
