"""Fault injection on the live reference pool: is any accepted query lost?

The reference pool (dien, 2 x g4dn.xlarge + 9 x r5n.large, replay workers at real time) is
served by a fresh router for each scenario and driven with open-loop Poisson load (the
production mix) at 60% of its live allowable throughput. A third into each run, one fault:

  kill-type      kill -9 the process hosting the 9 r5n.large instances (--worker-hosting type)
  kill-instance  kill -9 the process of one r5n.large instance (--worker-hosting instance)
  sigstop        SIGSTOP one r5n.large instance's process (instance hosting) and leave it
                 stopped: the router's hang timeout must find it and have it replaced
  slow-10x       slow one r5n.large instance's process 10x, as a 10% CPU quota would: it is
                 stopped and continued so that it runs 10 ms in every 100 ms (SIGSTOP/SIGCONT)
  sigterm-router SIGTERM the router: it drains (503 for new queries, then stops listening)
  overload-5x    no fault; the load is 5x the live allowable throughput

For each it prints: queries sent, answered 200, rejected with 503, refused (no connection,
after the router stopped listening: SIGTERM only), failed (anything else, e.g. 502 or a
dropped connection; must be 0), and the time from the fault until every worker reported
``up`` again in ``GET /v2/models/dien`` (polled every 0.1 s). The live allowable throughput
is measured at the start by a quick live search (``--rate-qps`` skips it).

    python benchmarks/bench_faults.py [--repeat 5] [--duration-s 15] [--rate-qps R]
        [--scenarios kill-type,kill-instance,...] [--json]

Everything (router, 11 workers, load generator) shares this machine's cores: the figures are
those of one run on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass

import numpy as np
import orjson

from kairos.aio import run_event_loop
from kairos.client.http import HttpPool
from kairos.client.launch import RouterProcess, running_router
from kairos.client.loadgen import NO_ANSWER, LoadSpec, find_capacity, run_load_records
from kairos.scenario import Scenario
from kairos.sim.capacity import allowable_throughput
from kairos.workload import production_mix

MODEL = "dien"
POOL = "g4dn.xlarge=2,r5n.large=9"
TARGET_TYPE = "r5n.large"
LOAD_SHARE = 0.6
OVERLOAD = 5.0
SLOW_PERIOD_S, SLOW_RUN_S = 0.100, 0.010
SCENARIOS = ("kill-type", "kill-instance", "sigstop", "slow-10x", "sigterm-router", "overload-5x")
REPEATED = ("kill-type", "kill-instance")
HOSTING = {
    "kill-type": "type",
    "kill-instance": "instance",
    "sigstop": "instance",
    "slow-10x": "instance",
    "sigterm-router": "type",
    "overload-5x": "type",
}


@dataclass(frozen=True)
class Outcome:
    scenario: str
    hosting: str
    rate_qps: float
    sent: int
    ok: int
    rejected: int
    refused: int
    failed: int
    failed_statuses: dict[str, int]
    recovery_s: float | None  # fault -> all workers up again (None: not applicable / never)
    p99_ms: float


def say(text: str) -> None:
    print(text, flush=True)


def workers(router: RouterProcess) -> list[dict]:
    return json.loads(router.get(f"/v2/models/{MODEL}")[1])["parameters"]["workers"]


def target_pid(router: RouterProcess) -> int:
    """The process of the first r5n.large instance (in type hosting: the group's)."""
    return int(next(w["pid"] for w in workers(router) if w["instance_type"] == TARGET_TYPE))


async def watch_recovery(url: str, fault_t: asyncio.Event, until_s: float) -> float | None:
    """Seconds from the fault until every worker is up again after one was seen down."""
    pool = HttpPool(url, timeout_s=1.0)
    await fault_t.wait()
    t0 = time.perf_counter()
    seen_down = False
    try:
        while time.perf_counter() - t0 < until_s:
            with contextlib.suppress(OSError, ValueError):
                doc = orjson.loads((await pool.fetch("GET", f"/v2/models/{MODEL}")).body)
                up = [w["up"] for w in doc["parameters"]["workers"]]
                seen_down = seen_down or not all(up)
                if seen_down and all(up):
                    return time.perf_counter() - t0
            await asyncio.sleep(0.1)
    finally:
        pool.close()
    return None


async def slow_down(pid: int, stop: asyncio.Event) -> None:
    """Run ``pid`` SLOW_RUN_S in every SLOW_PERIOD_S until ``stop`` (or it is gone)."""
    try:
        while not stop.is_set():
            os.kill(pid, signal.SIGSTOP)
            await asyncio.sleep(SLOW_PERIOD_S - SLOW_RUN_S)
            os.kill(pid, signal.SIGCONT)
            await asyncio.sleep(SLOW_RUN_S)
    except ProcessLookupError:
        return
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


async def drive(
    router: RouterProcess, scenario: str, rate_qps: float, duration_s: float, seed: int
) -> tuple[Outcome, float]:
    """Load the router, inject the scenario's fault a third in, and tally the outcome."""
    fault_at_s = duration_s / 3
    fault_t = asyncio.Event()
    stop_slowing = asyncio.Event()
    pid = (
        target_pid(router)
        if scenario in ("kill-type", "kill-instance", "sigstop", "slow-10x")
        else 0
    )

    def inject() -> None:
        if scenario in ("kill-type", "kill-instance"):
            os.kill(pid, signal.SIGKILL)
        elif scenario == "sigstop":
            os.kill(pid, signal.SIGSTOP)
        elif scenario == "slow-10x":
            asyncio.ensure_future(slow_down(pid, stop_slowing))
        elif scenario == "sigterm-router":
            router.proc.send_signal(signal.SIGTERM)

    fault_wall = [0.0]

    def fire() -> None:
        fault_wall[0] = time.perf_counter()
        inject()
        fault_t.set()

    loop = asyncio.get_running_loop()
    loop.call_later(fault_at_s, fire)
    watcher = (
        asyncio.ensure_future(watch_recovery(router.url, fault_t, duration_s + 30.0))
        if (scenario not in ("sigterm-router", "overload-5x"))
        else None
    )
    spec = LoadSpec(router.url, MODEL, rate_qps, duration_s, production_mix(), seed=seed)
    try:
        report, records = await run_load_records(spec)
    finally:
        stop_slowing.set()
    recovery_s = await watcher if watcher is not None else None
    if scenario == "sigstop":
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # if the router has not replaced it, let it go
    status = records.status
    after_stop = records.send_t >= fault_wall[0] if scenario == "sigterm-router" else False
    refused = int(np.sum((status == NO_ANSWER) & after_stop))
    bad = (status != 200) & (status != 503) & ~((status == NO_ANSWER) & after_stop)
    codes, counts = np.unique(status[bad], return_counts=True)
    outcome = Outcome(
        scenario,
        HOSTING[scenario],
        rate_qps,
        report.sent,
        report.completed,
        report.rejected,
        refused,
        int(bad.sum()),
        {_status(c): int(k) for c, k in zip(codes, counts, strict=True)},
        recovery_s,
        report.p99_ms,
    )
    return outcome, fault_wall[0]


def _status(code: int) -> str:
    return "no_answer" if code == NO_ANSWER else str(int(code))


def run_scenario(scenario: str, rate_qps: float, duration_s: float, seed: int) -> Outcome:
    args = [
        "--model",
        MODEL,
        "--pool",
        POOL,
        "--policy",
        "kairos",
        "--worker-hosting",
        HOSTING[scenario],
    ]
    with running_router(args, ready_timeout_s=120) as router:
        outcome, _ = run_event_loop(drive(router, scenario, rate_qps, duration_s, seed))
    return outcome


def live_allowable_qps(precision: float) -> float:
    """A quick live search on the reference pool, started from the simulated figure."""
    scenario = Scenario.build(MODEL)
    from kairos.catalog import Pool

    sim = allowable_throughput(scenario, Pool.parse(POOL), "kairos", queries=3000).allowable_qps
    args = ["--model", MODEL, "--pool", POOL, "--policy", "kairos", "--max-queue", "100000"]
    with running_router(args, ready_timeout_s=120) as router:
        spec = LoadSpec(router.url, MODEL, sim, 3.0, production_mix(), seed=1)
        res = run_event_loop(
            find_capacity(
                spec, precision=precision, guess_qps=0.9 * sim, step=1.25, min_queries=1500
            )
        )
    say(
        f"simulated allowable {sim:.1f} q/s; live allowable (quick search, precision "
        f"{precision:g}, {len(res.trials)} trials) {res.allowable_qps:.1f} q/s"
    )
    return res.allowable_qps


def row(o: Outcome) -> str:
    rec = "-" if o.recovery_s is None else f"{o.recovery_s:.2f}"
    why = f" {o.failed_statuses}" if o.failed else ""
    return (
        f"{o.scenario:15s} {o.hosting:8s} {o.rate_qps:7.1f} {o.sent:6d} {o.ok:6d} "
        f"{o.rejected:6d} {o.refused:6d} {o.failed:6d}{why:12s} {rec:>8s} {o.p99_ms:8.1f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="Runs of each kill scenario.")
    ap.add_argument("--duration-s", type=float, default=15.0, help="Seconds of load per run.")
    ap.add_argument(
        "--rate-qps",
        type=float,
        default=None,
        help="Live allowable throughput to take 60%% of (default: search it).",
    )
    ap.add_argument("--precision", type=float, default=0.08, help="Of the quick live search.")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    if args.rate_qps is None:
        allowable = live_allowable_qps(args.precision)
        source = "measured by the quick live search above"
    else:
        allowable = args.rate_qps
        source = "given with --rate-qps"
    base = LOAD_SHARE * allowable
    say(
        f"load: {base:.1f} q/s = {LOAD_SHARE:.0%} of {allowable:.1f} q/s ({source}); "
        f"overload-5x: {OVERLOAD * allowable:.1f} q/s; {args.duration_s:g} s per run, fault at "
        f"{args.duration_s / 3:g} s"
    )
    say(
        f"{'scenario':15s} {'hosting':8s} {'rate':>7s} {'sent':>6s} {'200':>6s} {'503':>6s} "
        f"{'refused':>6s} {'failed':>6s}{'':12s} {'back (s)':>8s} {'p99 ms':>8s}"
    )
    outcomes = []
    for name in names:
        for k in range(args.repeat if name in REPEATED else 1):
            rate = OVERLOAD * allowable if name == "overload-5x" else base
            outcome = run_scenario(name, rate, args.duration_s, seed=100 + k)
            outcomes.append(outcome)
            say(row(outcome))
    lost = sum(o.failed for o in outcomes)
    say(
        f"failed queries in all: {lost} over {len(outcomes)} runs "
        f"({', '.join(sorted({o.scenario for o in outcomes if o.failed})) or 'none'} lost any)"
    )
    if args.json:
        print(json.dumps([asdict(o) for o in outcomes], indent=2))


if __name__ == "__main__":
    main()
