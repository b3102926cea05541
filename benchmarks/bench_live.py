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

    python benchmarks/bench_live.py [--policy kairos] [--trial-queries 5500] [--pin-router 0]
        [--tensors binary|json] [--precision 0.02] [--worker-hosting type|instance]
        [--policy-option K=V] [--skip-ceiling] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

from kairos.catalog import Pool
from kairos.cli.common import parse_policy_options
from kairos.distributor import policy_names
from kairos.runtime.aio import run_event_loop
from kairos.runtime.launch import running_router
from kairos.runtime.loadgen import LoadReport, LoadSpec, find_capacity, run_load
from kairos.scenario import Scenario
from kairos.sim.capacity import allowable_throughput
from kairos.workload import production_mix

MODEL = "dien"
POOL = "g4dn.xlarge=2,r5n.large=9"
CEILING_RATES_QPS = (1000.0, 2000.0, 2500.0, 3000.0, 3500.0, 4000.0, 4500.0)
KEEPS_UP = 0.95  # a ceiling run counts if it completes this share of the offered rate


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


def live_capacity(policy: str, sim_qps: float, trial_queries: int, option_args: list[str],
                  binary: bool, precision: float) -> tuple[float, LoadReport | None]:  # fmt: skip
    args = ["--model", MODEL, "--pool", POOL, "--policy", policy, "--max-queue", "100000"]
    args += option_args
    with running_router(args, ready_timeout_s=120) as router:
        # A p99 needs thousands of queries: trials last long enough for ``trial_queries``.
        seconds = min(60.0, max(5.0, trial_queries / sim_qps))
        spec = LoadSpec(router.url, MODEL, sim_qps, seconds, production_mix(), seed=1,
                        binary=binary)  # fmt: skip

        def show(t: LoadReport) -> None:
            say(
                f"  trial {t.rate_qps:7.1f} qps: within QoS {t.qos_met_fraction:7.2%}, "
                f"p99 {t.p99_ms:6.1f} ms, overhead p99 {t.overhead_p99_ms:.2f} ms "
                f"({t.router_overhead_p99_ms:.2f} inside the router), "
                f"send lag p99 {t.send_lag_p99_ms:.2f} ms -> {'pass' if t.passed else 'fail'}"
            )

        res = run_event_loop(
            find_capacity(spec, precision=precision, guess_qps=sim_qps, step=1.2, progress=show)
        )
    passing = [t for t in res.trials if t.rate_qps == res.allowable_qps]
    return res.allowable_qps, passing[0] if passing else None


def ceiling(policy: str, seconds: float, serve_args: list[str], binary: bool
            ) -> list[LoadReport]:  # fmt: skip
    args = ["--model", MODEL, "--pool", POOL, "--policy", policy, "--time-scale", "0",
            "--max-queue", "100000", *serve_args]  # fmt: skip
    out = []
    with running_router(args, ready_timeout_s=120) as router:
        for rate in CEILING_RATES_QPS:
            spec = LoadSpec(router.url, MODEL, rate, seconds, production_mix(), seed=2,
                            binary=binary)  # fmt: skip
            rep = run_event_loop(run_load(spec))
            say(
                f"  offered {rate:6.0f} q/s: completed {rep.throughput_qps:7.1f} q/s, errors "
                f"{rep.errors}, p50 {rep.p50_ms:.2f} ms, p99 {rep.p99_ms:.2f} ms, "
                f"send lag p99 {rep.send_lag_p99_ms:.1f} ms"
            )
            out.append(rep)
            if rep.errors or rep.throughput_qps < KEEPS_UP * rate:
                break
    return out


def main() -> None:
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
        "--pin-router",
        default="",
        metavar="CPUS",
        help="e.g. 0: the router on these cores, workers and load generator on the others",
    )
    parser.add_argument("--skip-ceiling", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    t0 = time.perf_counter()
    scenario = Scenario.build(MODEL)
    pool = Pool.parse(POOL)
    say(
        f"{MODEL} on {POOL}, QoS {scenario.qos_ms:g} ms, policy {args.policy}, "
        f"worker hosting {args.worker_hosting}, {args.tensors} tensors"
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
    say("live allowable throughput search (replay workers at real time):")
    binary = args.tensors == "binary"
    live, at = live_capacity(args.policy, sim, args.trial_queries, option_args + serve_args,
                             binary, args.precision)  # fmt: skip
    runs: list[LoadReport] = []
    if not args.skip_ceiling:
        say("router ceiling with zero-latency workers:")
        runs = ceiling(args.policy, args.ceiling_s, serve_args, binary)
    kept = [r for r in runs if not r.errors and r.throughput_qps >= KEEPS_UP * r.rate_qps]
    top = max((r.throughput_qps for r in kept), default=0.0)
    result = {
        "policy": args.policy,
        "policy_options": options,
        "worker_hosting": args.worker_hosting,
        "tensors": args.tensors,
        "pin_router": sorted(router_cpus) if router_cpus else None,
        "simulated_allowable_qps": sim,
        "live_allowable_qps": live,
        "live_over_simulated": live / sim if sim else 0.0,
        "router_overhead_p50_ms": at.overhead_p50_ms if at else None,
        "router_overhead_p99_ms": at.overhead_p99_ms if at else None,
        "inside_router_overhead_p50_ms": at.router_overhead_p50_ms if at else None,
        "inside_router_overhead_p99_ms": at.router_overhead_p99_ms if at else None,
        "ceiling_qps": top,
        "seconds": time.perf_counter() - t0,
    }
    say(f"live / simulated allowable: {result['live_over_simulated']:.3f} (target >= 0.85)")
    if at is not None:
        say(
            f"router-added latency at {live:.1f} qps: p50 {at.overhead_p50_ms:.3f} ms, "
            f"p99 {at.overhead_p99_ms:.3f} ms (target p99 < 2 ms); the router's own share "
            f"(its process and worker links): p50 {at.router_overhead_p50_ms:.3f} ms, p99 "
            f"{at.router_overhead_p99_ms:.3f} ms"
        )
    capped = len(kept) == len(CEILING_RATES_QPS)
    note = " (kept up with every rate tried; the ceiling may be higher)" if capped else ""
    say(f"router ceiling: {top:.0f} queries/s{note} (target >= 2000)")
    say(f"bench took {result['seconds']:.0f} s")
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
