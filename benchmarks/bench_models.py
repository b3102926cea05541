"""Real models on this machine: service times, worker overhead, and the whole loop live.

Prints, measured in one run:
  1. per model, the service time per batch size (10, 100, 500, 1000) of the bare model in
     this process (one thread, pinned to the last core), median and p90 of ``--runs`` runs;
  2. per model at batch 100, a worker process's throughput (queries answered per second,
     one query at a time over the framed-TCP carrier the router uses, the worker on the last
     core, this process as the client on the first) against a bare inference loop on the
     same core and the same inputs; bare loops run before and after the worker and their
     mean is the reference (target: worker >= 0.95 of the bare loop);
  3. the whole loop (kairos.demos.real): profile ``--loop-model`` on two local types,
     plan, serve the planned pool for real, and search its live allowable throughput for
     ``kairos`` and ``fcfs``, beside the simulator's prediction from the measured profiles
     (target: within 15%).

    python benchmarks/bench_models.py [--models rm2,wnd,mtwnd,dien,ncf] [--runs 15]
        [--worker-seconds 4] [--loop-model dien] [--loop-queries 1000] [--skip-loop]
        [--skip-models] [--out bench-models-out] [--json]

Every figure is a ratio or a time measured in this run on a shared 2-core machine: other
processes' load moves them (see docs/models.md for the figures of record and their caveat).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

from kairos.aio import run_event_loop
from kairos.client.loadgen import BodyFactory
from kairos.demos.real import RealLoopSettings, format_summary, run_real_loop
from kairos.models import MODEL_NAMES, load_model
from kairos.models.base import ModelRunner
from kairos.protocol.frames import frame, unframe
from kairos.protocol.tensors import decode_inputs, parse_specs
from kairos.serving.pool.transport import make_link
from kairos.serving.worker.service import READY_LINE

BATCHES = (10, 100, 500, 1000)
WORKER_BATCH = 100
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


async def worker_qps(address: str, body: bytes, json_length: int, seconds: float) -> float:
    link = make_link("tcp", address)
    await link.open(30.0)
    message = frame({"qid": 0, "batch": WORKER_BATCH, "json_length": json_length}, body)
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


def worker_vs_bare(model: str, runner: ModelRunner, seconds: float) -> dict[str, float]:
    body, json_length = body_for(runner, WORKER_BATCH)
    arrays = decode_inputs(body, json_length)
    before = bare_loop_qps(runner, arrays, seconds)
    proc, address = start_worker(model)
    try:
        os.sched_setaffinity(0, {CLIENT_CORE})
        served = run_event_loop(worker_qps(address, body, json_length, seconds))
    finally:
        proc.terminate()
        proc.wait(10)
    after = bare_loop_qps(runner, arrays, seconds)
    bare = (before + after) / 2
    return {
        "bare_qps": bare,
        "worker_qps": served,
        "ratio": served / bare,
        "bare_spread": abs(before - after) / bare,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", default=",".join(MODEL_NAMES))
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--worker-seconds", type=float, default=4.0)
    ap.add_argument("--loop-model", default=RealLoopSettings().model)
    ap.add_argument("--skip-loop", action="store_true")
    ap.add_argument(
        "--loop-queries",
        type=int,
        default=RealLoopSettings().min_queries,
        help="queries per live trial (the first 10%% are warm-up)",
    )
    ap.add_argument("--skip-models", action="store_true", help="only the loop")
    ap.add_argument("--out", default="bench-models-out")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    report: dict[str, Any] = {"service_ms": {}, "worker": {}}
    say(
        f"service time of the bare model, ms (median / p90 of {args.runs}, 1 thread, core "
        f"{MODEL_CORE}); worker vs bare loop at batch {WORKER_BATCH}"
    )
    say(
        f"{'model':6} "
        + " ".join(f"{'b=' + str(b):>15}" for b in BATCHES)
        + f" {'bare q/s':>9} {'worker q/s':>10} {'ratio':>6}"
    )
    for model in [] if args.skip_models else args.models.split(","):
        runner = load_model(model, threads=1)
        times = service_times(runner, args.runs)
        cmp = worker_vs_bare(model, runner, args.worker_seconds)
        report["service_ms"][model] = {str(b): v for b, v in times.items()}
        report["worker"][model] = cmp
        cells = " ".join(f"{m:7.2f} / {p:5.2f}" for m, p in times.values())
        say(
            f"{model:6} {cells} {cmp['bare_qps']:9.1f} {cmp['worker_qps']:10.1f} "
            f"{cmp['ratio']:6.3f}"
        )
        del runner
    if not args.skip_loop:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        say(f"\nthe whole loop: {args.loop_model} profiled, planned, served and measured live")
        settings = RealLoopSettings(model=args.loop_model, min_queries=args.loop_queries)
        result = run_real_loop(settings, args.out, say)
        say(format_summary(result))
        report["loop"] = {
            "pool": str(result.pool),
            "qos_ms": result.qos_ms,
            "policies": {
                p.policy: {
                    "simulated_qps": p.simulated_qps,
                    "live_qps": p.live.allowable_qps,
                    "ratio": p.ratio,
                }
                for p in result.policies
            },
        }
        live = {p.policy: p.live.allowable_qps for p in result.policies}
        if live.get("fcfs"):
            say(f"kairos / fcfs live = {live['kairos'] / live['fcfs']:.2f}")
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
