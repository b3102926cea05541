"""Cells live: N routers behind HAProxy on loopback, against one router (``kairos serve
--cells N``; docs/cells.md).

Prints, in one run, with everything (load generator, balancer, routers, workers) on this
machine's cores, inside a private network namespace (loopback only) where the process may
make one:

  1. zero-latency workers (the front end's cost): one plain router, and 1, 2 and 4 cells, all
     running, taking turns at the same offered rate (``--rounds``); the CPU seconds per
     query of the whole front end (HAProxy plus every router plus the cell set's own
     process, read per process from /proc before and after each turn), and ``front-end CPU
     per query, 2 cells / 1 router: R`` (target <= 1.25);
  2. the ceilings: the highest completed rate among stepped offered rates that the front end
     keeps up with (``ceiling 2 cells / 1 router: R``; reported, not a target: on one machine
     the cells share its cores, so N machines would serve N times one);
  floor. HAProxy's own CPU per query: the same configuration in front of a static server
     (a second HAProxy answering as a router would) at the same offered rate, and with the
     1-router row, the lowest 2 cells / 1 router any front end behind HAProxy can reach;
  3. a router killed under load: how each query was answered (200, 503 from the balancer, no
     answer), the balancer's retries on another cell, and when the cell was back;
  4. replay workers: the live allowable throughput of the pool (``--replay-pool``) cut into
     2 cells behind the balancer, against the celled simulator's for the same cells behind its
     model of HAProxy's leastconn (``celled live / sim: R``, target within 15%), measured as
     bench_live.py measures one router: real time (``--time-scale 1``), both searches from
     the simulated rate to ``--precision`` 2%, ``--trial-queries`` 5,000 a trial on both
     sides; beside it, one router over the same pool against the central queue, searched
     in the same run with the trials taking turns (``--no-central`` skips it).

``--parts`` runs some of them (``front`` is 1-2, ``kill`` 3, ``replay`` 4); the load average
is printed at the start and the end.

    python benchmarks/bench_cells.py [--parts front,floor,kill,replay] [--rate-qps 600]
        [--duration-s 3] [--rounds 3] [--kill-rate-qps 150] [--time-scale 1] [--trial-queries 5000]
        [--precision 0.02] [--replay-pool g4dn.xlarge=2,r5n.large=9] [--no-central]
        [--skip-replay] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from kairos.aio import run_event_loop
from kairos.catalog import Pool
from kairos.client.admin import http_request
from kairos.client.http import request
from kairos.client.launch import running_router
from kairos.client.loadgen import (
    MAX_TRIAL_S,
    NO_ANSWER,
    BodyFactory,
    LoadReport,
    LoadSpec,
    fetch_info,
    run_load,
    run_load_records,
    search_rate,
)
from kairos.errors import KairosError
from kairos.limits import MAX_LOADGEN_QUERIES
from kairos.protocol.api import LISTEN_CELLS
from kairos.protocol.tensors import parse_specs
from kairos.scenario import Scenario
from kairos.serving.cells.balancer import (
    CELLS_PATH,
    CellServer,
    Haproxy,
    haproxy_binary,
    write_config,
)
from kairos.serving.cells.config import CellSettings
from kairos.sim.capacity import Measurement
from kairos.sim.celled import DEFAULT_CELLS, cut, measure_cells
from kairos.workload import parse_mix

MODEL = "dien"
ZERO_POOL = "g4dn.xlarge=4,r5n.large=8"  # 4 cells of 1 + 2 at most
# The reference pool of bench_live. Cut in 2, each cell holds one GPU, so the cells' p99 sits
# within 2 ms of QoS at any rate and the live transport the simulator does not have costs them
# 2-3 times what it costs the central queue (docs/cells.md); g4dn.xlarge=4,r5n.large=8 keeps
# two GPUs a cell.
REPLAY_POOL = "g4dn.xlarge=2,r5n.large=9"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The ceiling: the highest completed rate among these offered rates that the front end keeps up
# with (this share of the offered rate completed, no error, no 503), as bench_live.py counts.
CEILING_RATES_QPS = (500.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0, 4000.0, 5000.0)
KEEPS_UP = 0.95
FLOOR_BATCH = 64  # the static server's one answer: a real router's to a batch of this size
# The live search's bracketing step from the simulated rate (bench_live.py's): the live figure
# is expected near it, so small steps spend the trials near the answer.
REPLAY_STEP = 1.2
LIVE_SPLITTER = "haproxy-leastconn"  # the simulator's model of the balancer that runs live


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


def measure_cpu(fronts: dict[str, Front], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Each front end's CPU per answered query at the offered rate. The front ends take
    turns, ``--duration-s`` each in each of ``--rounds`` rounds (round r's arrivals are the
    same for all), so a change in the machine's background load falls on all of them alike;
    CPU and answered queries are summed over the rounds."""
    for front in fronts.values():  # warm up
        run_event_loop(run_load(spec(front.url, args.rate_qps, 1.0, seed=9)))
    cpu = {label: [0.0] * len(front.pids) for label, front in fronts.items()}
    sent = dict.fromkeys(fronts, 0)
    completed = dict.fromkeys(fronts, 0)
    for r in range(args.rounds):
        for label, front in fronts.items():
            cpu0 = [cpu_s(p) for p in front.pids]
            report = run_event_loop(
                run_load(spec(front.url, args.rate_qps, args.duration_s, seed=1 + r))
            )
            cpu[label] = [
                a + cpu_s(p) - c for a, p, c in zip(cpu[label], front.pids, cpu0, strict=True)
            ]
            sent[label] += report.sent
            completed[label] += report.completed
    rows = {}
    for label, front in fronts.items():
        each_ms = [1000.0 * c / max(1, completed[label]) for c in cpu[label]]
        rows[label] = {
            "front": label,
            "sent": sent[label],
            "completed": completed[label],
            "cpu_ms_per_query": sum(each_ms),
            "cpu_ms_per_query_by_process": dict(zip(front.names, each_ms, strict=True)),
        }
    return rows


def ceiling_qps(front: Front, rates: tuple[float, ...]) -> float:
    """The highest completed rate among ``rates``, up to the first it does not keep up with."""
    ceiling = 0.0
    for rate in rates:
        over = run_event_loop(run_load(spec(front.url, rate, 2.0, seed=2)))
        if over.errors or over.rejected or over.throughput_qps < KEEPS_UP * rate:
            break
        ceiling = over.throughput_qps
    return ceiling


def show_front(row: dict[str, Any], args: argparse.Namespace) -> None:
    parts = ", ".join(f"{n} {v:.3f}" for n, v in row["cpu_ms_per_query_by_process"].items())
    line = (
        f"  {row['front']:>13}: {row['completed']}/{row['sent']} answered at "
        f"{args.rate_qps:g} q/s, front-end CPU {row['cpu_ms_per_query']:.3f} ms/query ({parts})"
    )
    if "ceiling_qps" in row:
        line += f"; ceiling {row['ceiling_qps']:.0f} q/s"
    say(line)


def static_server(directory: Path, port: int, metadata: bytes, answer: bytes) -> str:
    """A second HAProxy that answers like a router without doing anything: the model's
    metadata to every GET (health checks included), one real inference answer to every POST."""
    (directory / "metadata.json").write_bytes(metadata)
    (directory / "answer.json").write_bytes(answer)
    return "\n".join(
        [
            "global",
            "    nbthread 1",
            "    tune.bufsize 131072",
            "defaults",
            "    mode http",
            "    timeout client 300s",
            "    timeout server 300s",
            "    timeout connect 2s",
            "frontend static",
            f"    bind 127.0.0.1:{port}",
            "    option http-buffer-request",
            "    http-request return status 200 content-type application/json "
            f"file {directory / 'metadata.json'} if {{ method GET }}",
            "    http-request return status 200 content-type application/json "
            f"file {directory / 'answer.json'}",
            "",
        ]
    )


def floor(args: argparse.Namespace, rows: list[dict[str, Any]] | None) -> dict[str, Any]:
    """HAProxy with the cells' configuration (retries, checks, buffers) in front of a static
    server at the same offered rate: the balancer's own CPU per query, which no cut and no
    router can save; with the 1-router row, the lowest 2 cells / 1 router can reach."""
    with running_single(ZERO_POOL, 0.0) as router:
        metadata = http_request(f"{router.url}/v2/models/{MODEL}")[1].encode()
        body = BodyFactory(parse_specs(orjson.loads(metadata)["inputs"]) or (), 0).body(FLOOR_BATCH)
        reply = request(f"{router.url}/v2/models/{MODEL}/infer", body).body
    out: dict[str, Any] = {}
    # The cells' configuration, then the same without HTTP retries (a router killed with
    # queries open would cost them a 503): what the retries cost per query.
    for label, settings in (
        ("floor", CellSettings()),
        ("no HTTP retry", CellSettings(retry_on="conn-failure")),
    ):
        row = static_front(args, settings, label, metadata, reply)
        out[label] = {
            "balancer_cpu_ms_per_query": row["cpu_ms_per_query"],
            "completed": row["completed"],
        }
    if rows:
        one = rows[0]["cpu_ms_per_query"]
        out["lowest_cpu_ratio_2_cells"] = (one + out["floor"]["balancer_cpu_ms_per_query"]) / one
        say(
            "lowest front-end CPU per query 2 cells / 1 router with HAProxy in front "
            f"(1 router + this floor): {out['lowest_cpu_ratio_2_cells']:.2f}"
        )
    return out


def static_front(
    args: argparse.Namespace, settings: CellSettings, label: str, metadata: bytes, reply: bytes
) -> dict[str, Any]:
    """HAProxy configured by ``settings`` in front of ``static_server``, measured as a front
    end (its own CPU only)."""
    with tempfile.TemporaryDirectory(prefix="kairos-floor-") as tmp:
        where = Path(tmp)
        static_port, port = free_port(), free_port()
        (where / "static.cfg").write_text(static_server(where, static_port, metadata, reply))
        binary = haproxy_binary(settings)
        static = subprocess.Popen(
            [binary, "-db", "-f", str(where / "static.cfg")], stdout=subprocess.DEVNULL
        )
        server = CellServer("cell0", "127.0.0.1", static_port, 1)
        admin = ("127.0.0.1", static_port)
        write_config(
            where / "haproxy.cfg", settings, ("127.0.0.1", port), [server], admin, where / "s"
        )
        proxy = Haproxy(binary, where / "haproxy.cfg", where / "s")
        try:
            proxy.start()
            assert proxy.pid is not None
            front = Front(f"http://127.0.0.1:{port}", [proxy.pid], ["balancer"])
            row = measure_cpu({label: front}, args)[label]
            show_front(row, args)
            return row
        finally:
            proxy.stop()
            static.terminate()
            static.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def show_trial(label: str, report: LoadReport) -> None:
    """One live trial: its verdict, and where its latency went (p99 end to end; the part
    outside the routers' queue and service time, which the simulator does not have; how late
    the load generator sent)."""
    say(
        f"    {label} at {report.rate_qps:.1f} q/s: p99 {report.p99_ms:.1f} ms, outside the "
        f"routers' queues p99 {report.overhead_p99_ms:.2f} ms, send lag p99 "
        f"{report.send_lag_p99_ms:.2f} ms; {report.verdict()}"
    )


async def live_searches(
    fronts: dict[str, tuple[str, float]], args: argparse.Namespace
) -> dict[str, float]:
    """The live allowable throughput of each front end (its URL and simulated figure), the
    searches side by side with their trials taking turns (one at a time), so each meets the
    same moments of the machine's background load. Each search is ``find_capacity``'s: from
    the simulated rate, ``--trial-queries`` a trial, to ``--precision``."""
    turn = asyncio.Lock()

    async def search(label: str, url: str, guess_qps: float) -> float:
        base = spec(url, guess_qps, 0.0, seed=4)
        info = await fetch_info(url, MODEL)

        async def passes(rate: float) -> bool:
            seconds = min(args.trial_queries / rate, MAX_TRIAL_S, MAX_LOADGEN_QUERIES / rate)
            async with turn:
                report = await run_load(replace(base, rate_qps=rate, duration_s=seconds), info=info)
            show_trial(label, report)
            return report.passed

        lo, _ = await search_rate(passes, guess_qps, args.precision, step=REPLAY_STEP)
        return lo

    found = await asyncio.gather(*(search(k, u, g) for k, (u, g) in fronts.items()))
    return dict(zip(fronts, found, strict=True))


def replay(args: argparse.Namespace) -> dict[str, Any]:
    """The live allowable throughput of the pool in 2 cells against the celled simulator's,
    measured as bench_live.py measures one router against the central queue (its live/sim
    is the reference): the searches start at the simulated rate, stop within
    ``--precision``, and judge every trial on ``--trial-queries`` measured queries; the
    workers replay at ``--time-scale`` (1: real time, as bench_live). Unless ``--no-central``,
    one router over the whole pool is searched in the same run, trials taking turns, against
    the central queue: the live/sim a plain router gets on the machine at that moment."""
    scenario = Scenario.from_files(MODEL, mix=parse_mix("production"))
    pool = Pool.parse(args.replay_pool)
    measurement = Measurement(queries=args.trial_queries, precision=args.precision)
    # The live cells run behind HAProxy's leastconn: the simulator's model of it, pick for
    # pick, is the reference; its default splitter is printed beside it.
    splitter = LIVE_SPLITTER
    sim = measure_cells(scenario, pool, 2, "kairos", measurement, splitter=splitter)
    default = measure_cells(
        scenario, pool, 2, "kairos", measurement, splitter=DEFAULT_CELLS.splitter
    )
    central = measure_cells(scenario, pool, 1, "kairos", measurement)
    with ExitStack() as stack:
        cells = stack.enter_context(running_cells(args.replay_pool, 2, args.time_scale))
        fronts = {"2 cells": (cells.url, sim.allowable_qps)}
        if args.central:
            single = stack.enter_context(running_single(args.replay_pool, args.time_scale))
            fronts["1 router"] = (single.url, central.allowable_qps)
        live = run_event_loop(live_searches(fronts, args))
    row = {
        "pool": args.replay_pool,
        "cells": 2,
        "cell_pools": [str(c) for c in cut(scenario, pool, 2)],
        "splitter": splitter,
        "sim_allowable_qps": sim.allowable_qps,
        "sim_default_splitter_allowable_qps": default.allowable_qps,
        "live_allowable_qps": live["2 cells"],
        "sim_central_allowable_qps": central.allowable_qps,
        "live_central_allowable_qps": live.get("1 router"),
        "time_scale": args.time_scale,
        "trial_queries": args.trial_queries,
        "precision": args.precision,
    }
    say(
        f"  {args.replay_pool} in 2 cells ({' + '.join(row['cell_pools'])}, {splitter}): "
        f"live {live['2 cells']:.1f} q/s, "
        f"simulated {sim.allowable_qps:.1f} q/s (--time-scale {args.time_scale:g}); "
        f"the simulator's {DEFAULT_CELLS.splitter} splitter: {default.allowable_qps:.1f} q/s"
    )
    if "1 router" in live:
        say(
            f"  one router over the same pool, same run: live {live['1 router']:.1f} q/s, "
            f"central queue simulated {central.allowable_qps:.1f} q/s: live / sim "
            f"{live['1 router'] / central.allowable_qps:.2f}"
        )
    return row


PARTS = ("front", "floor", "kill", "replay")


def pool_text(text: str) -> str:
    """``--replay-pool``, checked: a bad pool is one line from argparse, not a traceback."""
    try:
        scenario = Scenario.from_files(MODEL, mix=parse_mix("production"))
        pool = Pool.parse(text)
        scenario.check_pool(pool)
        cut(scenario, pool, 2)
    except KairosError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def front_ends(args: argparse.Namespace, result: dict[str, Any]) -> None:
    say(
        f"1-2. zero-latency workers, {ZERO_POOL}, {MODEL}, at {args.rate_qps:g} q/s, "
        f"{args.rounds} rounds of {args.duration_s:g} s each:"
    )
    with ExitStack() as stack:
        fronts = {"1 router": stack.enter_context(running_single(ZERO_POOL, 0.0))}
        for n in (1, 2, 4):
            fronts[f"{n} cells"] = stack.enter_context(running_cells(ZERO_POOL, n, 0.0))
        rows = measure_cpu(fronts, args)
        for label, front in fronts.items():
            rows[label]["ceiling_qps"] = ceiling_qps(front, CEILING_RATES_QPS)
            show_front(rows[label], args)
    result["front_end"] = list(rows.values())
    one, cell, two = rows["1 router"], rows["1 cells"], rows["2 cells"]
    cpu_ratio = two["cpu_ms_per_query"] / one["cpu_ms_per_query"]
    ceiling_ratio = two["ceiling_qps"] / max(one["ceiling_qps"], 1e-9)
    say(f"front-end CPU per query, 2 cells / 1 router: {cpu_ratio:.2f} (target <= 1.25)")
    cut_ratio = two["cpu_ms_per_query"] / cell["cpu_ms_per_query"]
    say(f"front-end CPU per query, 2 cells / 1 cell behind the balancer: {cut_ratio:.2f}")
    result["cpu_ratio_2_cells_over_1_cell"] = cut_ratio
    say(f"ceiling 2 cells / 1 router: {ceiling_ratio:.2f} (reported; one machine's cores)")
    result |= {"cpu_ratio_2_cells": cpu_ratio, "ceiling_ratio_2_cells": ceiling_ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate-qps", type=float, default=600.0)
    parser.add_argument("--duration-s", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kill-rate-qps", type=float, default=150.0)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--trial-queries", type=int, default=5000)
    parser.add_argument("--precision", type=float, default=0.02)
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}"
    )
    parser.add_argument(
        "--replay-pool", type=pool_text, default=REPLAY_POOL, help="replay: the pool cut in 2"
    )
    parser.add_argument(
        "--no-central", dest="central", action="store_false", help="replay: cells alone"
    )
    parser.add_argument("--skip-replay", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if parts - set(PARTS):
        parser.error(f"--parts {args.parts!r}: unknown {sorted(parts - set(PARTS))}")
    if args.skip_replay:
        parts.discard("replay")
    result: dict[str, Any] = {"private_network": private_network(), "load": os.getloadavg()}
    say(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    if "front" in parts:
        front_ends(args, result)
    if "floor" in parts:
        say("HAProxy's own floor: the same configuration in front of a static server:")
        result["floor"] = floor(args, result.get("front_end"))
    if "kill" in parts:
        say("3. a router killed under load (2 cells, replay workers at real time):")
        result["killed"] = killed(args)
    if "replay" in parts:
        say("4. replay workers, allowable throughput (99% within QoS):")
        row = result["replay"] = replay(args)
        ratio = row["live_allowable_qps"] / row["sim_allowable_qps"]
        say(f"celled live / sim: {ratio:.2f} (target within 15%)")
        result["celled_live_over_sim"] = ratio
    say(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
