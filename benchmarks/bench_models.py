"""Real models on this machine: service times, worker overhead, and the whole loop live.

Prints, measured in one run:
  1. per model, the service time per batch size (10, 100, 500, 1000) of the bare model in
     this process (one thread, pinned to the last core), median and p90 of ``--runs`` runs;
  2. per model at batch 100, a worker process's throughput (queries answered per second over
     the framed-TCP carrier the router uses, the worker on the last core, this process as the
     client on the first) against a bare inference loop on the same core and the same inputs
     (target: worker >= 0.9 of the bare loop). The bare loop and the worker take turns in
     ``--rounds`` rounds, so the other processes' load falls on both alike. The worker is
     measured two ways: ``serial``, one query at a time as the router sends them by default
     (the worker idles for each round trip), and ``overlap``, one query waiting at the worker
     while one runs (what the worker's compute lane is built for, and what the router's
     ``--pipeline`` does); ``cpu`` is the bare
     loop's CPU time per query over the worker process's own (under ``overlap``), which the
     machine's other load moves least;
  3. the whole loop (kairos.demos.real): profile ``--loop-model`` on two local types,
     plan, serve the planned pool for real, and search its live allowable throughput for
     ``kairos`` and ``fcfs``, beside the simulator's prediction from the measured profiles
     (target: within 15%); with ``--pipeline both`` (the default) each policy is served
     twice, without and with ``kairos serve --pipeline``, and the live ratio of the two is
     printed.

    python benchmarks/bench_models.py [--models rm2,wnd,mtwnd,dien,ncf] [--runs 15]
        [--worker-seconds 4] [--rounds 4] [--loop-model dien] [--loop-queries 1000] [--skip-loop]
        [--pipeline off|on|both] [--skip-models] [--out bench-models-out] [--json]

Every figure is a ratio or a time measured in this run on a shared 2-core machine: other
processes' load moves them (see docs/models.md for the figures of record and their caveat).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from kairos.aio import run_event_loop, settle_heap
from kairos.client.http import HttpPool
from kairos.client.launch import RouterProcess, running_router
from kairos.client.loadgen import BodyFactory
from kairos.demos.real import RealLoopSettings, format_summary, policy_label, run_real_loop
from kairos.models import MODEL_NAMES, load_model
from kairos.models.base import ModelRunner
from kairos.protocol.frames import frame, unframe
from kairos.protocol.tensors import decode_inputs, parse_specs
from kairos.serving.pool.transport import make_link
from kairos.serving.worker.service import READY_LINE

BATCHES = (10, 100, 500, 1000)
WORKER_BATCH = 100
# Queries kept in flight through the router (closed loop), so its queue never empties and
# --pipeline can always send one behind; the one worker serves them one at a time.
ROUTER_CLIENTS = 4
CLIENT_CORE, MODEL_CORE = 0, (os.cpu_count() or 1) - 1


def say(text: str) -> None:
    print(text, flush=True)


def body_for(runner: ModelRunner, batch: int) -> tuple[bytes, int]:
    specs = parse_specs(runner.inputs)
    assert specs is not None
    return BodyFactory(specs, 0).binary_body(batch)


def service_times(runner: ModelRunner, runs: int) -> dict[int, tuple[float, float]]:
    """Batch -> (median, p90) ms of the bare model on inputs like the load generator's."""
    os.sched_setaffinity(0, {MODEL_CORE})
    out = {}
    for b in BATCHES:
        body, json_length = body_for(runner, b)
        arrays = decode_inputs(body, json_length)
        runner(arrays)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            runner(arrays)
            times.append((time.perf_counter() - t0) * 1000.0)
        out[b] = (float(np.median(times)), float(np.percentile(times, 90)))
    return out


def bare_loop_qps(runner: ModelRunner, arrays: dict[str, np.ndarray], seconds: float) -> float:
    os.sched_setaffinity(0, {MODEL_CORE})
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        runner(arrays)
        n += 1
    return n / (time.perf_counter() - t0)


def start_worker(model: str) -> tuple[subprocess.Popen[str], str]:
    cmd = [
        sys.executable,
        "-m",
        "kairos.cli.worker",
        "--instance-type",
        "bench",
        "--model",
        model,
        "--mode",
        "model",
        "--threads",
        "1",
        "--cpus",
        str(MODEL_CORE),
        "--local-type",
        "none",
        "--port",
        "0",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(READY_LINE):
            return proc, f"127.0.0.1:{line.rsplit('=', 1)[1].strip()}"
    raise SystemExit(f"worker for {model} exited with status {proc.wait()}")


async def worker_qps(address: str, message: bytes, seconds: float) -> float:
    """One query at a time through the router's own link (it never has two outstanding)."""
    link = make_link("tcp", address)
    await link.open(30.0)
    await link.call(message, 30.0)  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        header, _ = unframe(await link.call(message, 30.0))
        if header["code"] != 200:
            raise SystemExit(f"worker answered {header}")
        n += 1
    elapsed = time.perf_counter() - t0
    await link.close()
    return n / elapsed


async def overlapped_qps(address: str, message: bytes, seconds: float, depth: int = 2) -> float:
    """``depth`` queries outstanding at all times (one running, the rest waiting); replies
    come back in order on the one connection."""
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    wire = len(message).to_bytes(4, "big") + message

    async def reply() -> None:
        size = int.from_bytes(await reader.readexactly(4), "big")
        header, _ = unframe(await reader.readexactly(size))
        if header["code"] != 200:
            raise SystemExit(f"worker answered {header}")

    writer.write(wire)  # warm-up
    await reply()
    for _ in range(depth):
        writer.write(wire)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        await reply()
        n += 1
        writer.write(wire)
    elapsed = time.perf_counter() - t0
    for _ in range(depth):
        await reply()
    writer.close()
    return n / elapsed


def worker_profile(model: str, times: dict[int, tuple[float, float]], out: Path) -> list[str]:
    """Profiles and prices for the worker's type (``bench``) from the bare model's service
    times (median and p90 per batch): what a router needs to serve it as a remote worker.
    The router's policy is fcfs; the profile only sets when --pipeline sends one behind
    (the mean) and the hang timeouts. Returns the router's options for them."""
    rows = ["model,instance_type,batch_size,latency_ms"]
    for b, (median, p90) in times.items():
        rows += [f"{model},bench,{b},{median!r}"] * 9 + [f"{model},bench,{b},{p90!r}"]
    (out / "profiles.csv").write_text("\n".join(rows) + "\n")
    (out / "prices.csv").write_text("instance_type,price_per_hr\nbench,0.1\n")
    return ["--profiles", str(out / "profiles.csv"), "--prices", str(out / "prices.csv")]


def start_routers(
    stack: contextlib.ExitStack, model: str, address: str, profile_args: list[str]
) -> tuple[RouterProcess, RouterProcess]:
    """Two routers on the client's core in front of the one worker: without and with
    --pipeline (they take turns, so only one sends at a time)."""
    args = [
        "--model",
        model,
        "--pool",
        "bench=1",
        "--workers",
        address,
        "--policy",
        "fcfs",
        "--batch-mix",
        f"fixed:{WORKER_BATCH}",
        "--qos-ms",
        "60000",
        "--router-cpus",
        str(CLIENT_CORE),
        *profile_args,
    ]
    serial = stack.enter_context(running_router(args, ready_timeout_s=60))
    piped = stack.enter_context(running_router([*args, "--pipeline"], ready_timeout_s=60))
    return serial, piped


async def router_qps(url: str, model: str, body: bytes, json_length: int, seconds: float) -> float:
    """``ROUTER_CLIENTS`` queries in flight through the router's HTTP endpoint (binary
    tensors, keep-alive connections), each sent again as soon as it is answered."""
    pool = HttpPool(url, 60.0)
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(json_length),
    }
    request = pool.target.request_bytes("POST", f"/v2/models/{model}/infer", body, headers)
    await pool.warm(ROUTER_CLIENTS)
    answered = [0]

    async def client(deadline: float) -> None:
        while time.perf_counter() < deadline:
            response = await pool.send(request)
            if response.status != 200:
                raise SystemExit(f"router answered {response.status}: {response.text[:200]}")
            answered[0] += 1

    await asyncio.gather(*(client(time.perf_counter() + 0.2) for _ in range(ROUTER_CLIENTS)))
    answered[0] = 0  # the first 0.2 s were warm-up
    t0 = time.perf_counter()
    await asyncio.gather(*(client(t0 + seconds) for _ in range(ROUTER_CLIENTS)))
    elapsed = time.perf_counter() - t0
    pool.close()
    return answered[0] / elapsed


def process_cpu_s(pid: int) -> float:
    """User plus system CPU seconds of a process, all its threads (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_vs_bare(
    model: str,
    runner: ModelRunner,
    seconds: float,
    rounds: int,
    times: dict[int, tuple[float, float]],
) -> dict[str, float]:
    """The bare loop and the worker (serial, then overlapped, then through a router without
    and with --pipeline) take turns for ``rounds`` rounds of ``seconds / rounds`` each; the
    figures are over all rounds."""
    body, json_length = body_for(runner, WORKER_BATCH)
    arrays = decode_inputs(body, json_length)
    message = frame({"qid": 0, "batch": WORKER_BATCH, "json_length": json_length}, body)
    turn = seconds / rounds
    bare: list[float] = []
    serial: list[float] = []
    overlap: list[float] = []
    routed: list[float] = []
    piped: list[float] = []
    bare_cpu = worker_cpu = 0.0
    proc, address = start_worker(model)
    with contextlib.ExitStack() as stack:
        stack.callback(proc.wait, 10)  # last: the routers stop first
        stack.callback(proc.terminate)
        out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-models-")))
        serial_router, piped_router = start_routers(
            stack, model, address, worker_profile(model, times, out)
        )
        for _ in range(rounds):
            c0 = time.process_time()
            bare.append(bare_loop_qps(runner, arrays, turn))
            bare_cpu += (time.process_time() - c0) / (bare[-1] * turn)
            os.sched_setaffinity(0, {CLIENT_CORE})
            serial.append(run_event_loop(worker_qps(address, message, turn)))
            c0 = process_cpu_s(proc.pid)
            overlap.append(run_event_loop(overlapped_qps(address, message, turn)))
            worker_cpu += (process_cpu_s(proc.pid) - c0) / (overlap[-1] * turn)
            for router, figures in ((serial_router, routed), (piped_router, piped)):
                qps = router_qps(router.url, model, body, json_length, turn)
                figures.append(run_event_loop(qps))
    bare_qps = float(np.mean(bare))
    return {
        "bare_qps": bare_qps,
        "worker_qps": float(np.mean(serial)),
        "overlap_qps": float(np.mean(overlap)),
        "ratio": float(np.mean(serial)) / bare_qps,
        "overlap_ratio": float(np.mean(overlap)) / bare_qps,
        "router_qps": float(np.mean(routed)),
        "pipeline_qps": float(np.mean(piped)),
        "router_ratio": float(np.mean(routed)) / bare_qps,
        "pipeline_ratio": float(np.mean(piped)) / bare_qps,
        "cpu_ratio": bare_cpu / worker_cpu,
        "bare_spread": float(np.ptp(bare)) / bare_qps,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", default=",".join(MODEL_NAMES))
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--worker-seconds", type=float, default=4.0, help="per way, all rounds")
    ap.add_argument("--rounds", type=int, default=4, help="turns of bare loop and worker")
    ap.add_argument("--loop-model", default=RealLoopSettings().model)
    ap.add_argument("--skip-loop", action="store_true")
    ap.add_argument(
        "--loop-queries",
        type=int,
        default=RealLoopSettings().min_queries,
        help="queries per live trial (the first 10%% are warm-up)",
    )
    ap.add_argument(
        "--pipeline",
        choices=("off", "on", "both"),
        default="both",
        help="serve each policy live without kairos serve --pipeline, with it, or both ways",
    )
    ap.add_argument("--skip-models", action="store_true", help="only the loop")
    ap.add_argument("--out", default="bench-models-out")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    report: dict[str, Any] = {"service_ms": {}, "worker": {}}
    say(
        f"service time of the bare model, ms (median / p90 of {args.runs}, 1 thread, core "
        f"{MODEL_CORE}); worker vs bare loop at batch {WORKER_BATCH} (q/s; ratio = serial / "
        "bare, ovl/b = overlap / bare, cpu = bare / worker CPU per query; through a router, "
        f"{ROUTER_CLIENTS} queries in flight: rtr/b without --pipeline, pip/b with it)"
    )
    say(
        f"{'model':6} "
        + " ".join(f"{'b=' + str(b):>15}" for b in BATCHES)
        + f" {'bare q/s':>9} {'serial':>7} {'overlap':>7} {'ratio':>6} {'ovl/b':>6} {'cpu':>6}"
        + f" {'rtr/b':>6} {'pip/b':>6}"
    )
    for model in [] if args.skip_models else args.models.split(","):
        runner = load_model(model, threads=1)
        # As the worker does once loaded: a full garbage collection walking torch's objects
        # would otherwise land in the bare loop (it made it slower than the worker on wnd).
        settle_heap()
        times = service_times(runner, args.runs)
        cmp = worker_vs_bare(model, runner, args.worker_seconds, args.rounds, times)
        report["service_ms"][model] = {str(b): v for b, v in times.items()}
        report["worker"][model] = cmp
        cells = " ".join(f"{m:7.2f} / {p:5.2f}" for m, p in times.values())
        say(
            f"{model:6} {cells} {cmp['bare_qps']:9.1f} {cmp['worker_qps']:7.1f} "
            f"{cmp['overlap_qps']:7.1f} {cmp['ratio']:6.3f} {cmp['overlap_ratio']:6.3f} "
            f"{cmp['cpu_ratio']:6.3f} {cmp['router_ratio']:6.3f} {cmp['pipeline_ratio']:6.3f}"
        )
        del runner
    if not args.skip_loop:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        say(f"\nthe whole loop: {args.loop_model} profiled, planned, served and measured live")
        ways = {"off": (False,), "on": (True,), "both": (False, True)}[args.pipeline]
        settings = RealLoopSettings(
            model=args.loop_model, min_queries=args.loop_queries, pipeline=ways
        )
        result = run_real_loop(settings, args.out, say)
        say(format_summary(result))
        report["loop"] = {
            "pool": str(result.pool),
            "qos_ms": result.qos_ms,
            "policies": {
                p.label: {
                    "simulated_qps": p.simulated_qps,
                    "live_qps": p.live.allowable_qps,
                    "ratio": p.ratio,
                }
                for p in result.policies
            },
        }
        live = {p.label: p.live.allowable_qps for p in result.policies}
        if live.get("fcfs") and live.get("kairos"):
            say(f"kairos / fcfs live = {live['kairos'] / live['fcfs']:.2f}")
        for policy in settings.policies:
            piped, serial = live.get(policy_label(policy, True)), live.get(policy)
            if piped and serial:
                say(f"{policy}: live with --pipeline / without = {piped / serial:.2f}")
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
