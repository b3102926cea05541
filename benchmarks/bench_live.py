"""Live runtime benchmark: the reference pool served for real on loopback.

Prints, for 2 x g4dn.xlarge + 9 x r5n.large serving dien (QoS 35 ms) with replay workers at
real time:
  1. live allowable throughput (99% within QoS, open-loop Poisson, production mix) against
     the simulator's, and their ratio (target >= 0.85);
  2. the router's added latency per query, p50/p99, at the live allowable rate (client
     latency minus the queue and service time the router reports; target p99 < 2 ms), and
     the part of it spent inside the router process and on its worker links (the router's
     own ``overhead_ms``: without the client's and the network's share);
  3. the router's ceiling with zero-latency workers: the highest completed rate among
     offered rates it keeps up with (>= 95% completed, no errors; target >= 2,000 q/s).
Everything (router, 11 workers in 2 processes, load generator) shares this machine's cores;
``--pin-router 0`` gives the router core 0 and the rest the other cores, the nearest a
2-core machine gets to the router having a machine of its own.

``--backend ray`` serves the pool as Ray actors (a local Ray instance the router starts, one
actor process per instance); ``--backend both`` runs a local and a Ray router side by side,
their trials taking turns (so both meet the same background load on a shared machine; the
idle Ray processes, about 6% of a core, run during the local trials too), and prints Ray's
figures as ratios of local's (target: within 5%). With Ray,
the whole benchmark first moves into a private network namespace with loopback only (Linux,
root; ``tests.netns``) unless it already runs in one, so Ray binds 127.0.0.1.

    python benchmarks/bench_live.py [--policy kairos] [--trial-queries 5500] [--pin-router 0]
        [--tensors binary|json] [--precision 0.02] [--worker-hosting type|instance]
        [--backend local|ray|both] [--policy-option K=V] [--skip-ceiling] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from kairos.aio import run_event_loop
from kairos.catalog import Pool
from kairos.cli.common import parse_policy_options
from kairos.client.launch import RouterProcess, running_router
from kairos.client.loadgen import (
    MAX_TRIAL_S,
    LoadReport,
    LoadSpec,
    fetch_info,
    run_load,
    search_rate,
)
from kairos.distributor import policy_names
from kairos.limits import MAX_LOADGEN_QUERIES
from kairos.scenario import Scenario
from kairos.sim.capacity import allowable_throughput
from kairos.workload import production_mix

MODEL = "dien"
POOL = "g4dn.xlarge=2,r5n.large=9"
CEILING_RATES_QPS = (1000.0, 2000.0, 2500.0, 3000.0, 3500.0, 4000.0, 4500.0)
KEEPS_UP = 0.95  # a ceiling run counts if it completes this share of the offered rate
SETTLE_S = 3.0  # after every instance is up, let start-up work (Ray's most of all) finish


def say(text: str) -> None:
    print(text, flush=True)


def pin_args(router_cpus: set[int] | None) -> list[str]:
    """Serve options giving the router ``router_cpus`` and its workers the other cores; this
    process (the load generator) moves to the other cores too, as when the router has a
    machine of its own (Linux)."""
    if not router_cpus:
        return []
    rest = set(range(os.cpu_count() or 1)) - router_cpus
    if not rest:
        raise SystemExit(f"--pin-router {sorted(router_cpus)} leaves no core for the rest")
    os.sched_setaffinity(0, rest)
    cores = ",".join(map(str, sorted(rest)))
    return ["--router-cpus", ",".join(map(str, sorted(router_cpus))), "--worker-cpus", cores]


def wait_all_up(router: RouterProcess, n: int, timeout_s: float = 300.0) -> None:
    """Measure only once every instance is up (Ray starts its actors one process each) and
    the start-up has settled."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, text = router.get("/v2/admin/pool")
        if status == 200 and sum(w["up"] for w in json.loads(text)["workers"]) == n:
            time.sleep(SETTLE_S)
            return
        time.sleep(0.2)
    raise SystemExit(f"not all {n} instances came up within {timeout_s:g} s")


@contextlib.contextmanager
def routers(backends: list[str], args: list[str]) -> Iterator[dict[str, RouterProcess]]:
    """One router per backend, all up at once (so their trials can alternate)."""
    with contextlib.ExitStack() as stack:
        running = {}
        for b in backends:
            router = stack.enter_context(
                running_router([*args, "--backend", b], ready_timeout_s=300)
            )
            wait_all_up(router, Pool.parse(POOL).size)
            running[b] = router
        yield running


def show_trial(backend: str, t: LoadReport) -> None:
    say(
        f"  [{backend}] trial {t.rate_qps:7.1f} qps: within QoS {t.qos_met_fraction:7.2%}, "
        f"p99 {t.p99_ms:6.1f} ms, overhead p99 {t.overhead_p99_ms:.2f} ms "
        f"({t.router_overhead_p99_ms:.2f} inside the router), "
        f"send lag p99 {t.send_lag_p99_ms:.2f} ms -> {'pass' if t.passed else 'fail'}"
    )


async def interleaved_searches(
    specs: dict[str, LoadSpec], sim_qps: float, precision: float
) -> dict[str, tuple[float, LoadReport | None]]:
    """The live capacity search of every backend, run side by side with their trials taking
    turns (one at a time: a lock), so each backend's trials meet the same moments of this
    machine's background load."""
    turn = asyncio.Lock()

    async def search(backend: str, spec: LoadSpec) -> tuple[float, LoadReport | None]:
        info = await fetch_info(spec.url, spec.model)
        trials: list[LoadReport] = []

        async def passes(rate: float) -> bool:
            # As find_capacity: at least 1,000 queries per trial, within the load cap.
            seconds = max(spec.duration_s, min(1000.0 / rate, MAX_TRIAL_S))
            seconds = min(seconds, MAX_LOADGEN_QUERIES / rate)
            async with turn:
                rep = await run_load(replace(spec, rate_qps=rate, duration_s=seconds), info=info)
            trials.append(rep)
            show_trial(backend, rep)
            return rep.passed

        lo, _ = await search_rate(passes, sim_qps, precision, step=1.2)
        passing = [t for t in trials if t.rate_qps == lo]
        return lo, passing[0] if passing else None

    found = await asyncio.gather(*(search(b, spec) for b, spec in specs.items()))
    return dict(zip(specs, found, strict=True))


def live_capacity(
    backends: list[str],
    policy: str,
    sim_qps: float,
    trial_queries: int,
    serve_args: list[str],
    binary: bool,
    precision: float,
) -> dict[str, tuple[float, LoadReport | None]]:
    args = ["--model", MODEL, "--pool", POOL, "--policy", policy, "--max-queue", "100000"]
    with routers(backends, args + serve_args) as running:
        # A p99 needs thousands of queries: trials last long enough for ``trial_queries``.
        seconds = min(60.0, max(5.0, trial_queries / sim_qps))
        specs = {
            b: LoadSpec(r.url, MODEL, sim_qps, seconds, production_mix(), seed=1, binary=binary)
            for b, r in running.items()
        }
        return run_event_loop(interleaved_searches(specs, sim_qps, precision))


def ceiling(
    backends: list[str], policy: str, seconds: float, serve_args: list[str], binary: bool
) -> dict[str, list[LoadReport]]:
    """Offered rates in turn on each backend's zero-latency router until it falls behind."""
    args = [
        "--model",
        MODEL,
        "--pool",
        POOL,
        "--policy",
        policy,
        "--time-scale",
        "0",
        "--max-queue",
        "100000",
        *serve_args,
    ]
    out: dict[str, list[LoadReport]] = {b: [] for b in backends}
    with routers(backends, args) as running:
        for rate in CEILING_RATES_QPS:
            for b, router in running.items():
                if out[b] and (
                    out[b][-1].errors or out[b][-1].throughput_qps < KEEPS_UP * out[b][-1].rate_qps
                ):
                    continue
                spec = LoadSpec(
                    router.url, MODEL, rate, seconds, production_mix(), seed=2, binary=binary
                )
                rep = run_event_loop(run_load(spec))
                say(
                    f"  [{b}] offered {rate:6.0f} q/s: completed {rep.throughput_qps:7.1f} q/s, "
                    f"errors {rep.errors}, p50 {rep.p50_ms:.2f} ms, p99 {rep.p99_ms:.2f} ms, "
                    f"send lag p99 {rep.send_lag_p99_ms:.1f} ms"
                )
                out[b].append(rep)
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    default_policy = "kairos" if "kairos" in policy_names() else "fcfs"
    parser.add_argument("--policy", default=default_policy)
    parser.add_argument(
        "--trial-queries",
        type=int,
        default=5500,
        help="queries per live trial (5 to 60 s; the simulator measures 5,000 after warm-up)",
    )
    parser.add_argument(
        "--precision",
        type=float,
        default=0.02,
        help="relative precision of the live search (the simulator's is 0.02)",
    )
    parser.add_argument(
        "--tensors",
        choices=("binary", "json"),
        default="binary",
        help="request tensors as raw bytes (binary extension, as Triton's clients) or JSON",
    )
    parser.add_argument("--ceiling-s", type=float, default=4.0)
    parser.add_argument(
        "--policy-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="policy option for both the simulator and the router (repeatable)",
    )
    parser.add_argument(
        "--worker-hosting",
        choices=("type", "instance"),
        default="type",
        help="local worker processes: one per instance or one per instance type",
    )
    parser.add_argument(
        "--backend",
        choices=("local", "ray", "both"),
        default="local",
        help="where the workers run: local processes, Ray actors, or both one after the other",
    )
    parser.add_argument(
        "--pin-router",
        default="",
        metavar="CPUS",
        help="e.g. 0: the router on these cores, workers and load generator on the others",
    )
    parser.add_argument("--skip-ceiling", action="store_true")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args()


def private_network_for_ray() -> None:
    """Ray binds the machine's own address unless nothing but loopback exists."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.* when run as a file
    from tests.netns import (
        NamespaceUnavailable,
        enter_loopback_namespace,
        only_loopback_interfaces,
    )

    if only_loopback_interfaces():
        return
    try:
        enter_loopback_namespace()  # first thing, so the whole process is inside
    except NamespaceUnavailable as exc:
        raise SystemExit(f"--backend ray needs a loopback-only network namespace: {exc}") from None
    say("running in a private network namespace (loopback only) for Ray")


def summary(
    backend: str, sim: float, live: float, at: LoadReport | None, runs: list[LoadReport]
) -> dict[str, Any]:
    """One backend's figures, printed and returned."""
    kept = [r for r in runs if not r.errors and r.throughput_qps >= KEEPS_UP * r.rate_qps]
    result = {
        "backend": backend,
        "live_allowable_qps": live,
        "live_over_simulated": live / sim if sim else 0.0,
        "router_overhead_p50_ms": at.overhead_p50_ms if at else None,
        "router_overhead_p99_ms": at.overhead_p99_ms if at else None,
        "inside_router_overhead_p50_ms": at.router_overhead_p50_ms if at else None,
        "inside_router_overhead_p99_ms": at.router_overhead_p99_ms if at else None,
        "ceiling_qps": max((r.throughput_qps for r in kept), default=0.0),
        "ceiling_capped": len(kept) == len(CEILING_RATES_QPS),
    }
    say(
        f"[{backend}] live / simulated allowable: {result['live_over_simulated']:.3f} "
        "(target >= 0.85)"
    )
    if at is not None:
        say(
            f"[{backend}] router-added latency at {live:.1f} qps: p50 {at.overhead_p50_ms:.3f} "
            f"ms, p99 {at.overhead_p99_ms:.3f} ms (target p99 < 2 ms); the router's own share "
            f"(its process and worker links): p50 {at.router_overhead_p50_ms:.3f} ms, p99 "
            f"{at.router_overhead_p99_ms:.3f} ms"
        )
    if runs:
        note = " (kept up with every rate tried; the ceiling may be higher)"
        say(
            f"[{backend}] router ceiling: {result['ceiling_qps']:.0f} queries/s"
            f"{note if result['ceiling_capped'] else ''} (target >= 2000)"
        )
    return result


def compare_backends(local: dict[str, Any], ray: dict[str, Any]) -> dict[str, float | None]:
    """Ray's figures as ratios of local's (1.0 = the same; target within 5%)."""

    def ratio(key: str) -> float | None:
        a, b = local.get(key), ray.get(key)
        return b / a if a and b is not None else None

    out = {
        k: ratio(k)
        for k in (
            "live_over_simulated",
            "router_overhead_p50_ms",
            "router_overhead_p99_ms",
            "ceiling_qps",
        )
    }
    shown = ", ".join(f"{k} {v:.3f}" for k, v in out.items() if v is not None)
    say(f"ray / local: {shown} (target: allowable and router-added latency within 5%)")
    return out


def main() -> None:
    args = parse_args()
    backends = ["local", "ray"] if args.backend == "both" else [args.backend]
    if "ray" in backends:
        private_network_for_ray()
    t0 = time.perf_counter()
    scenario = Scenario.build(MODEL)
    pool = Pool.parse(POOL)
    say(
        f"{MODEL} on {POOL}, QoS {scenario.qos_ms:g} ms, policy {args.policy}, "
        f"worker hosting {args.worker_hosting}, {args.tensors} tensors, "
        f"backends {', '.join(backends)}"
    )
    options = parse_policy_options(tuple(args.policy_option))
    option_args = [a for text in args.policy_option for a in ("--policy-option", text)]
    serve_args = ["--worker-hosting", args.worker_hosting]
    router_cpus = {int(c) for c in args.pin_router.split(",") if c.strip()} or None
    serve_args += pin_args(router_cpus)
    if router_cpus:
        say(f"router pinned to cores {sorted(router_cpus)}, everything else to the others")
    if options:
        say(f"policy options: {options}")
    sim = allowable_throughput(
        scenario, pool, args.policy, queries=5000, policy_options=options
    ).allowable_qps
    say(f"simulated allowable throughput: {sim:.1f} qps")
    binary = args.tensors == "binary"
    say("live allowable throughput search (replay workers at real time, backends in turn):")
    found = live_capacity(
        backends,
        args.policy,
        sim,
        args.trial_queries,
        option_args + serve_args,
        binary,
        args.precision,
    )
    runs: dict[str, list[LoadReport]] = {b: [] for b in backends}
    if not args.skip_ceiling:
        say("router ceiling with zero-latency workers (backends in turn):")
        runs = ceiling(backends, args.policy, args.ceiling_s, serve_args, binary)
    results = [summary(b, sim, *found[b], runs[b]) for b in backends]
    result: dict[str, Any] = {
        "policy": args.policy,
        "policy_options": options,
        "worker_hosting": args.worker_hosting,
        "tensors": args.tensors,
        "pin_router": sorted(router_cpus) if router_cpus else None,
        "simulated_allowable_qps": sim,
        **results[0],
    }
    if len(results) == 2:
        result = {**result, "backends": results, "ray_over_local": compare_backends(*results)}
    result["seconds"] = time.perf_counter() - t0
    say(f"bench took {result['seconds']:.0f} s")
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
