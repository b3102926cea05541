"""Cells live: N routers behind HAProxy on loopback, against one router (``kairos serve
--cells N``; docs/cells.md).

Prints, in one run, with everything (load generator, balancer, routers, workers) on this
machine's cores, inside a private network namespace (loopback only) where the process may
make one:

  1. zero-latency workers (the front end's cost): one plain router, then 1, 2 and 4 cells, each
     at the same offered rate; the CPU seconds per query of the whole front end (HAProxy plus
     every router plus the cell set's own process, read per process from /proc before and
     after), and ``front-end CPU per query, 2 cells / 1 router: R`` (target <= 1.25);
  2. the ceilings: the highest completed rate among stepped offered rates that the front end
     keeps up with (``ceiling 2 cells / 1 router: R``; reported, not a target: on one machine
     the cells share its cores, so N machines would serve N times one);
  3. a router killed under load: how each query was answered (200, 503 from the balancer, no
     answer), the balancer's retries on another cell, and when the cell was back;
  4. replay workers (``--time-scale``): the live allowable throughput of the pool cut into 2
     cells behind the balancer, against the celled simulator's for the same cells and
     splitter (``celled live / sim: R``, target within 15%).

    python benchmarks/bench_cells.py [--rate-qps 600] [--duration-s 5] [--kill-rate-qps 150]
        [--time-scale 2] [--skip-replay] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from kairos.aio import run_event_loop
from kairos.catalog import Pool
from kairos.client.admin import http_request
from kairos.client.launch import running_router
from kairos.client.loadgen import NO_ANSWER, LoadSpec, find_capacity, run_load, run_load_records
from kairos.protocol.api import LISTEN_CELLS
from kairos.scenario import Scenario
from kairos.serving.cells.balancer import CELLS_PATH
from kairos.sim.capacity import Measurement
from kairos.sim.celled import DEFAULT_CELLS, measure_cells
from kairos.workload import parse_mix

MODEL = "dien"
ZERO_POOL = "g4dn.xlarge=4,r5n.large=8"  # 4 cells of 1 + 2 at most
REPLAY_POOL = "g4dn.xlarge=2,r5n.large=9"  # the reference pool of bench_live
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The ceiling: the highest completed rate among these offered rates that the front end keeps up
# with (this share of the offered rate completed, no error, no 503), as bench_live.py counts.
CEILING_RATES_QPS = (500.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0, 4000.0, 5000.0)
KEEPS_UP = 0.95


def say(text: str) -> None:
    print(text, flush=True)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (its own, not its children's)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def private_network() -> bool:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.* when run as a file
    from tests.netns import NamespaceUnavailable, enter_loopback_namespace, only_loopback_interfaces

    if only_loopback_interfaces():
        return True
    try:
        enter_loopback_namespace()
    except NamespaceUnavailable as exc:
        say(f"(no private network namespace: {exc}; every socket binds 127.0.0.1 anyway)")
        return False
    return True


@dataclass
class Front:
    """A running front end: its URL and the processes whose CPU is the front end's."""

    url: str
    pids: list[int]
    names: list[str]


def cells_doc(url: str) -> dict[str, Any]:
    status, text = http_request(url + CELLS_PATH)
    if status != 200:
        raise SystemExit(f"{url}{CELLS_PATH} answered {status}: {text[:200]}")
    return dict(orjson.loads(text))


def wait_until(url: str, ok: Any, timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        doc = cells_doc(url)
        if ok(doc):
            return doc
        if time.monotonic() > deadline:
            raise SystemExit(f"cells at {url} not ready within {timeout_s:g} s: {doc}")
        time.sleep(0.1)


def all_up(doc: dict[str, Any]) -> bool:
    return all(c["ready"] and c["balancer_status"] == "UP" for c in doc["cells"])


@contextmanager
def running_cells(pool: str, cells: int, time_scale: float) -> Iterator[Front]:
    args = ["--model", MODEL, "--pool", pool, "--cells", str(cells)]
    args += ["--time-scale", f"{time_scale:g}"]
    with running_router(args, listen=LISTEN_CELLS) as front:
        doc = wait_until(front.url, all_up)
        pids = [front.proc.pid, int(doc["balancer_pid"]), *(int(c["pid"]) for c in doc["cells"])]
        names = ["cell set", "balancer", *(f"router {c['cell']}" for c in doc["cells"])]
        yield Front(front.url, pids, names)


@contextmanager
def running_single(pool: str, time_scale: float) -> Iterator[Front]:
    args = ["--model", MODEL, "--pool", pool, "--time-scale", f"{time_scale:g}"]
    with running_router(args) as router:
        yield Front(router.url, [router.proc.pid], ["router"])


def spec(url: str, rate_qps: float, duration_s: float, seed: int) -> LoadSpec:
    return LoadSpec(url, MODEL, rate_qps, duration_s, parse_mix("production"), seed=seed)


def front_end(front: Front, args: argparse.Namespace, label: str) -> dict[str, Any]:
    """CPU per query at the offered rate, then the ceiling at an overload."""
    run_event_loop(run_load(spec(front.url, args.rate_qps, 1.0, seed=9)))  # warm up
    cpu0 = [cpu_s(p) for p in front.pids]
    report = run_event_loop(run_load(spec(front.url, args.rate_qps, args.duration_s, seed=1)))
    each_ms = [
        1000.0 * (cpu_s(p) - c) / max(1, report.completed)
        for p, c in zip(front.pids, cpu0, strict=True)
    ]
    per_query_ms = sum(each_ms)
    ceiling = 0.0
    for rate in CEILING_RATES_QPS:  # up to the first rate it does not keep up with
        over = run_event_loop(run_load(spec(front.url, rate, 2.0, seed=2)))
        if over.errors or over.rejected or over.throughput_qps < KEEPS_UP * rate:
            break
        ceiling = over.throughput_qps
    row = {
        "front": label,
        "sent": report.sent,
        "completed": report.completed,
        "cpu_ms_per_query": per_query_ms,
        "cpu_ms_per_query_by_process": dict(zip(front.names, each_ms, strict=True)),
        "ceiling_qps": ceiling,
    }
    parts = ", ".join(f"{n} {v:.3f}" for n, v in zip(front.names, each_ms, strict=True))
    say(
        f"  {label:>9}: {report.completed}/{report.sent} answered at {args.rate_qps:g} q/s, "
        f"front-end CPU {per_query_ms:.3f} ms/query ({parts}); ceiling {ceiling:.0f} q/s"
    )
    return row


def killed(args: argparse.Namespace) -> dict[str, Any]:
    """A router killed a second into load through 2 cells (replay workers, real time)."""
    with running_cells(ZERO_POOL, 2, 1.0) as front:
        before = cells_doc(front.url)
        victim = before["cells"][0]
        threading.Timer(1.0, os.kill, (victim["pid"], signal.SIGKILL)).start()
        report, records = run_event_loop(
            run_load_records(spec(front.url, args.kill_rate_qps, 4.0, seed=3))
        )
        after = wait_until(
            front.url,
            lambda d: all_up(d) and d["cells"][0]["restarts"] == victim["restarts"] + 1,
        )
    values, counts = np.unique(records.status, return_counts=True)
    codes = {int(k): int(v) for k, v in zip(values, counts, strict=True)}
    row = {
        "sent": report.sent,
        "answered_200": codes.get(200, 0),
        "answered_503": codes.get(503, 0),
        "no_answer": codes.get(NO_ANSWER, 0),
        "other": sum(v for k, v in codes.items() if k not in (200, 503, NO_ANSWER)),
        "balancer_retries": after["retries"] - before["retries"],
        "balancer_503": after["responses_5xx"] - before["responses_5xx"],
        "back_s": after["cells"][0]["back_s"][-1],
    }
    say(
        f"  {row['sent']} queries at {args.kill_rate_qps:g} q/s: {row['answered_200']} x 200, "
        f"{row['answered_503']} x 503 (the balancer answered {row['balancer_503']}), "
        f"{row['no_answer']} unanswered, {row['other']} other; the balancer retried "
        f"{row['balancer_retries']} on the other cell"
    )
    say(f"  cell back within: {row['back_s']:.2f} s (target <= 5 s)")
    return row


def replay(args: argparse.Namespace) -> dict[str, Any]:
    scenario = Scenario.from_files(MODEL, mix=parse_mix("production"))
    pool = Pool.parse(REPLAY_POOL)
    sim = measure_cells(scenario, pool, 2, "kairos", Measurement(), splitter=DEFAULT_CELLS.splitter)
    with running_cells(REPLAY_POOL, 2, args.time_scale) as front:
        live = run_event_loop(
            find_capacity(
                spec(front.url, sim.allowable_qps, 0.0, seed=4), guess_qps=sim.allowable_qps
            )
        )
    row = {
        "pool": REPLAY_POOL,
        "cells": 2,
        "splitter": DEFAULT_CELLS.splitter,
        "sim_allowable_qps": sim.allowable_qps,
        "live_allowable_qps": live.allowable_qps,
        "time_scale": args.time_scale,
    }
    say(
        f"  {REPLAY_POOL} in 2 cells ({DEFAULT_CELLS.splitter}): live "
        f"{live.allowable_qps:.1f} q/s, simulated {sim.allowable_qps:.1f} q/s "
        f"(--time-scale {args.time_scale:g})"
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate-qps", type=float, default=600.0)
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--kill-rate-qps", type=float, default=150.0)
    parser.add_argument("--time-scale", type=float, default=2.0)
    parser.add_argument("--skip-replay", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {"private_network": private_network()}

    say(f"1-2. zero-latency workers, {ZERO_POOL}, {MODEL}:")
    rows = []
    with running_single(ZERO_POOL, 0.0) as front:
        rows.append(front_end(front, args, "1 router"))
    for n in (1, 2, 4):
        with running_cells(ZERO_POOL, n, 0.0) as front:
            rows.append(front_end(front, args, f"{n} cells"))
    result["front_end"] = rows
    one, two = rows[0], rows[2]
    cpu_ratio = two["cpu_ms_per_query"] / one["cpu_ms_per_query"]
    ceiling_ratio = two["ceiling_qps"] / one["ceiling_qps"]
    say(f"front-end CPU per query, 2 cells / 1 router: {cpu_ratio:.2f} (target <= 1.25)")
    cut_ratio = two["cpu_ms_per_query"] / rows[1]["cpu_ms_per_query"]
    say(f"front-end CPU per query, 2 cells / 1 cell behind the balancer: {cut_ratio:.2f}")
    result["cpu_ratio_2_cells_over_1_cell"] = cut_ratio
    say(f"ceiling 2 cells / 1 router: {ceiling_ratio:.2f} (reported; one machine's cores)")
    result |= {"cpu_ratio_2_cells": cpu_ratio, "ceiling_ratio_2_cells": ceiling_ratio}

    say("3. a router killed under load (2 cells, replay workers at real time):")
    result["killed"] = killed(args)

    if args.skip_replay:
        say("4. replay workers: skipped (--skip-replay)")
    else:
        say("4. replay workers, allowable throughput (99% within QoS):")
        row = result["replay"] = replay(args)
        ratio = row["live_allowable_qps"] / row["sim_allowable_qps"]
        say(f"celled live / sim: {ratio:.2f} (target within 15%)")
        result["celled_live_over_sim"] = ratio
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
