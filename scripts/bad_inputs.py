"""Run ~150 bad ``kairos`` command lines and classify what each one did.

Every case is a command line that must be refused: the expected answer is exit status 2 and
exactly one line on stderr, starting with ``error:`` and holding a ``To fix:`` hint, within a
time limit and a memory limit. Anything else is counted as a failure of one of these kinds:

- ``traceback``: a Python traceback on stderr;
- ``memory``: the process hit the address-space limit (MemoryError) or was killed;
- ``hang``: still running at the time limit (a server that started listening is one);
- ``silent``: exit status 0, i.e. the bad value was accepted;
- ``format``: refused, but not with one ``error: ... To fix: ...`` line and status 2.

The loadgen cases that need a router get one, started here on loopback (replay workers,
time scale 0.05). Fixture files (malformed CSVs) are written to a temporary folder.

Usage: python scripts/bad_inputs.py [--jobs 2] [--verbose]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

MEMORY_LIMIT_BYTES = 4 * 1024**3
TIME_LIMIT_S = 60.0
SERVER_TIME_LIMIT_S = 25.0  # a serve/worker case that has not failed by then is listening


@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]
    time_limit_s: float = TIME_LIMIT_S


@dataclass(frozen=True)
class Outcome:
    case: Case
    kind: str  # ok | traceback | memory | hang | silent | format
    status: int | None
    seconds: float
    max_rss_mb: float
    stderr: str


FILES = {
    "mix_nan.csv": b"batch_size,weight\n10,0.5\n20,nan\n",
    "mix_inf.csv": b"batch_size,weight\n10,inf\n",
    "mix_latin1.csv": b"batch_size,weight\n10,1\n20,\xe9\n",
    "mix_empty.csv": b"",
    "mix_header_only.csv": b"batch_size,weight\n",
    "mix_wrong_cols.csv": b"size,w\n10,1\n",
    "mix_negative.csv": b"batch_size,weight\n10,-1\n",
    "mix_zero.csv": b"batch_size,weight\n10,0\n",
    "mix_batch0.csv": b"batch_size,weight\n0,1\n",
    "mix_batch_frac.csv": b"batch_size,weight\n1.5,1\n",
    "mix_batch_huge.csv": b"batch_size,weight\n1e300,1\n",
    "mix_short_row.csv": b"batch_size,weight\n10\n",
    "mix_above_grid.csv": b"batch_size,weight\n100,0.5\n5000,0.5\n",
    "trace_latin1.csv": b"arrival_s,batch_size\n0.1,10\n0.2,\xff\n",
    "trace_nan.csv": b"arrival_s,batch_size\nnan,10\n",
    "trace_empty.csv": b"",
    "trace_wrong_cols.csv": b"t,b\n0.1,10\n",
    "trace_unsorted.csv": b"arrival_s,batch_size\n0.2,10\n0.1,10\n",
    "trace_negative.csv": b"arrival_s,batch_size\n-1,10\n",
    "trace_batch0.csv": b"arrival_s,batch_size\n0.1,0\n",
    "trace_above_grid.csv": b"arrival_s,batch_size\n0.1,5000\n",
    "trace_inf.csv": b"arrival_s,batch_size\ninf,10\n",
    "profiles_latin1.csv": b"model,instance_type,batch_size,latency_ms\nrm2,g4dn.xlarge,10,\xe9\n",
    "profiles_nan.csv": b"model,instance_type,batch_size,latency_ms\nrm2,g4dn.xlarge,10,nan\n",
    "profiles_empty.csv": b"",
    "profiles_header_only.csv": b"model,instance_type,batch_size,latency_ms\n",
    "profiles_wrong_cols.csv": b"model,type,batch,ms\nrm2,g4dn.xlarge,10,5\n",
    "profiles_negative.csv": b"model,instance_type,batch_size,latency_ms\nrm2,g4dn.xlarge,10,-5\n",
    "profiles_batch0.csv": b"model,instance_type,batch_size,latency_ms\nrm2,g4dn.xlarge,0,5\n",
    "profiles_garbage.csv.gz": b"this is not gzip",
    "prices_latin1.csv": b"instance_type,price_per_hr\ng4dn.xlarge,\xe90.5\n",
    "prices_nan.csv": b"instance_type,price_per_hr\ng4dn.xlarge,nan\n",
    "prices_empty.csv": b"",
    "prices_missing_col.csv": b"instance_type\ng4dn.xlarge\n",
    "prices_negative.csv": b"instance_type,price_per_hr\ng4dn.xlarge,-0.5\n",
    "prices_zero.csv": b"instance_type,price_per_hr\ng4dn.xlarge,0\n",
    "prices_duplicate.csv": b"instance_type,price_per_hr\ng4dn.xlarge,0.5\ng4dn.xlarge,0.6\n",
    "a_file.txt": b"not a folder\n",
}


def cases(url: str) -> list[Case]:
    """The command lines. ``url`` is a live router serving dien (for loadgen cases)."""
    return offline_cases() + server_cases(url)


def offline_cases() -> list[Case]:
    """Commands that read files and simulate: simulate, capacity, plan, compare, demo."""
    s = ("simulate", "--rate-qps", "20", "--queries", "500")
    sim = [
        [],  # neither --rate-qps nor --trace
        ["--rate-qps", "0"],
        ["--rate-qps", "-5"],
        ["--rate-qps", "nan"],
        ["--rate-qps", "inf"],
        ["--rate-qps", "1e9"],
        ["--rate-qps", "1e308"],
        ["--rate-qps", "abc"],
        ["--rate-qps", "10", "--queries", "0"],
        ["--rate-qps", "10", "--queries", "-1"],
        ["--rate-qps", "10", "--queries", "10000000000000"],
        ["--rate-qps", "10", "--queries", "1e3"],
        ["--rate-qps", "10", "--seed", "-1"],
        ["--rate-qps", "10", "--seed", "99999999999999999999999"],
        ["--rate-qps", "10", "--trace", "trace_nan.csv"],
    ]
    out = [Case(("simulate", *a)) for a in sim]
    sim_extra = [
        ["--pool", "g4dn.xlarge=100000000"],
        ["--pool", ""],
        ["--pool", "g4dn.xlarge=-1"],
        ["--pool", "g4dn.xlarge=abc"],
        ["--pool", "nope.large=1"],
        ["--pool", "g4dn.xlarge=1,g4dn.xlarge=2"],
        ["--pool", "=3"],
        ["--pool", "g4dn.xlarge"],
        ["--pool", "g4dn.xlarge=0"],
        ["--qos-ms", "0"],
        ["--qos-ms", "-1"],
        ["--qos-ms", "nan"],
        ["--qos-ms", "inf"],
        ["--qos-ms", "1e308"],
        ["--model", "nope"],
        ["--model", ""],
        ["--batch-mix", "fixed:0"],
        ["--batch-mix", "fixed:-3"],
        ["--batch-mix", "fixed:abc"],
        ["--batch-mix", "fixed:5000"],
        ["--batch-mix", "fixed:1e9"],
        ["--batch-mix", "nofile.csv"],
        ["--batch-mix", "."],
        *[["--batch-mix", f] for f in sorted(FILES) if f.startswith("mix_")],
        ["--policy", "nope"],
        ["--policy-option", "safeguard_frac=abc", "--policy", "kairos"],
        ["--policy-option", "bogus=1", "--policy", "kairos"],
        ["--policy-option", "novalue"],
        ["--policy-option", "=1"],
        ["--policy-option", "safeguard_frac=-3", "--policy", "kairos"],
        ["--profiles", "nofile.csv"],
        ["--profiles", "."],
        *[["--profiles", f] for f in sorted(FILES) if f.startswith("profiles_")],
        ["--prices", "nofile.csv"],
        ["--prices", "."],
        *[["--prices", f] for f in sorted(FILES) if f.startswith("prices_")],
    ]
    out += [Case((*s, *a)) for a in sim_extra]
    traces = ["nofile.csv", ".", *sorted(f for f in FILES if f.startswith("trace_"))]
    out += [Case(("simulate", "--trace", t)) for t in traces]
    cap = ("capacity", "--pool", "g4dn.xlarge=1", "--queries", "500")
    out += [
        Case((*cap, *a))
        for a in [
            ["--precision", "0"],
            ["--precision", "-1"],
            ["--precision", "2"],
            ["--precision", "nan"],
            ["--queries", "0"],
            ["--queries", "10000000000000"],
            ["--pool", "r5n.large=100000000"],
            ["--policy", "nope"],
        ]
    ]
    plan = ("plan", "--model", "rm2")
    out += [
        Case((*plan, *a))
        for a in [
            ["--budget-per-hr", "1e308"],
            ["--budget-per-hr", "0"],
            ["--budget-per-hr", "-1"],
            ["--budget-per-hr", "nan"],
            ["--budget-per-hr", "inf"],
            ["--budget-per-hr", "1e6"],
            ["--budget-per-hr", "2.5", "--top", "0"],
            ["--budget-per-hr", "2.5", "--top", "-1"],
            ["--budget-per-hr", "2.5", "--top", "1000000000000"],
            ["--budget-per-hr", "2.5", "--verify", "-1"],
            ["--budget-per-hr", "2.5", "--verify", "1000000000"],
            ["--budget-per-hr", "2.5", "--verify", "1", "--queries", "0"],
            ["--budget-per-hr", "2.5", "--verify", "1", "--queries", "10000000000000"],
            ["--budget-per-hr", "2.5", "--max", "g4dn.xlarge=-1"],
            ["--budget-per-hr", "2.5", "--max", "nope=1"],
            ["--budget-per-hr", "2.5", "--max", "x"],
            ["--budget-per-hr", "2.5", "--verify", "1", "--policy", "nope"],
            ["--budget-per-hr", "2.5", "--bound", "nope"],
            ["--budget-per-hr", "1e308", "--bound", "fluid"],
            [],
        ]
    ]
    cmp_ = ("compare", "--model", "rm2", "--schemes", "kairos", "--queries", "300")
    out += [
        Case((*cmp_, *a))
        for a in [
            ["--budget-per-hr", "1e308"],
            ["--budget-per-hr", ""],
            ["--budget-per-hr", "a,b"],
            ["--budget-per-hr", "0"],
            ["--budget-per-hr", "2.5", "--qos-ms", "0"],
            ["--budget-per-hr", "2.5", "--qos-ms", "nan"],
            ["--budget-per-hr", "2.5", "--model", "nope"],
            ["--budget-per-hr", "2.5", "--model", ""],
            ["--budget-per-hr", "2.5", "--queries", "10"],
            ["--budget-per-hr", "2.5", "--queries", "10000000000000"],
            ["--budget-per-hr", "2.5", "--precision", "0"],
            ["--budget-per-hr", "2.5", "--precision", "1"],
            ["--budget-per-hr", "2.5", "--top-k", "0"],
            ["--budget-per-hr", "2.5", "--top-k", "1000000000"],
            ["--budget-per-hr", "2.5", "--schemes", "bogus"],
            ["--budget-per-hr", "2.5", "--schemes", ""],
            ["--budget-per-hr", "2.5", "--plot", "/proc/nope/x.png"],
            ["--budget-per-hr", "2.5", "--plot", "."],
            ["--budget-per-hr", "2.5", "--plot", "a_file.txt/x.png"],
            ["--budget-per-hr", "2.5", "--plot", "out.txt"],
            ["--budget-per-hr", "2.5", "--report", "/proc/nope/r.html"],
            ["--budget-per-hr", "2.5", "--report", "out.pdf"],
            ["--budget-per-hr", "2.5", "--report", "."],
            ["--budget-per-hr", "2.5", "--seed", "-1"],
            ["--budget-per-hr", "2.5", "--batch-mix", "mix_nan.csv"],
            [],
        ]
    ]
    out += [
        Case(("demo", *a))
        for a in [
            ["--out", "/proc/nope"],
            ["--out", "a_file.txt"],
            ["--budget-per-hr", "0"],
            ["--budget-per-hr", "1e308"],
            ["--model", "nope"],
            ["--bogus"],
        ]
    ]
    return out


def server_cases(url: str) -> list[Case]:
    """Commands that listen or connect: serve, worker, loadgen (against ``url``), demo --live,
    and the parser's own usage errors."""
    srv = ("serve", "--model", "dien", "--pool", "g4dn.xlarge=1,r5n.large=1", "--port", "0")
    out = [
        Case((*srv, *a), SERVER_TIME_LIMIT_S)
        for a in [
            ["--port", "70000"],
            ["--port", "-1"],
            ["--port", "abc"],
            ["--host", "nope.invalid"],
            ["--host", "192.0.2.1"],
            ["--host", ""],
            ["--max-queue", "0"],
            ["--max-queue", "-1"],
            ["--max-queue", "1000000000000"],
            ["--max-body-bytes", "0"],
            ["--max-body-bytes", "-1"],
            ["--max-body-bytes", "1000000000000000"],
            ["--time-scale", "-1"],
            ["--time-scale", "nan"],
            ["--time-scale", "inf"],
            ["--time-scale", "1e9"],
            ["--drain-timeout-s", "-1"],
            ["--drain-timeout-s", "nan"],
            ["--drain-timeout-s", "1e12"],
            ["--timeout-floor-s", "0"],
            ["--timeout-floor-s", "nan"],
            ["--overhead-factor", "-1"],
            ["--overhead-factor", "nan"],
            ["--workers", ""],
            ["--workers", "nohost"],
            ["--workers", "a:b"],
            ["--pool", "g4dn.xlarge=100000000"],
            ["--pool", "g4dn.xlarge=1,g4dn.xlarge=1"],
            ["--policy", "nope"],
            ["--policy", "kairos", "--policy-option", "safeguard_frac=abc"],
            ["--router-cpus", "999"],
            ["--router-cpus", "abc"],
            ["--mode", "model", "--handler", "nomodule:fn"],
            ["--api-token", ""],
            ["--batch-mix", "fixed:5000"],
            ["--seed", "-1"],
            ["--transport", "nope"],
            ["--profiles", "."],
            ["--max-attempts", "0"],
            ["--max-attempts", "101"],
        ]
    ]
    wrk = ("worker", "--instance-type", "r5n.large", "--model", "dien")
    out += [
        Case((*wrk, *a), SERVER_TIME_LIMIT_S)
        for a in [
            ["--port", "70000"],
            ["--time-scale", "-1"],
            ["--time-scale", "nan"],
            ["--instances", "0"],
            ["--instances", "1000000000"],
            ["--seed", "-1"],
            ["--cpus", "999"],
            ["--host", "nope.invalid"],
            ["--handler", "nomodule:fn"],
        ]
    ]
    out += [Case(("worker", "--instance-type", "nope", "--model", "dien"), SERVER_TIME_LIMIT_S)]
    out += [
        Case(("worker", "--instance-type", "r5n.large", "--model", "nope"), SERVER_TIME_LIMIT_S)
    ]
    lg = ("loadgen", "--url", url, "--model", "dien", "--duration-s", "2")
    out += [
        Case((*lg, *a))
        for a in [
            ["--rate-qps", "0"],
            ["--rate-qps", "-1"],
            ["--rate-qps", "1e9"],
            ["--rate-qps", "nan"],
            ["--rate-qps", "10", "--duration-s", "0"],
            ["--rate-qps", "10", "--duration-s", "-1"],
            ["--rate-qps", "10", "--duration-s", "1e12"],
            ["--rate-qps", "10", "--duration-s", "nan"],
            ["--rate-qps", "100000", "--duration-s", "1000000"],
            ["--rate-qps", "10", "--batch-mix", "fixed:5000"],
            ["--rate-qps", "10", "--batch-mix", "mix_nan.csv"],
            ["--find-capacity", "--precision", "0"],
            ["--find-capacity", "--precision", "2"],
            ["--rate-qps", "10", "--tensors", "nope"],
            ["--rate-qps", "10", "--seed", "-1"],
            [],
        ]
    ]
    out += [Case(("loadgen", "--url", url, "--model", "nope", "--rate-qps", "10"))]
    out += [
        Case(("loadgen", "--url", u, "--model", "dien", "--rate-qps", "10"))
        for u in ["http://127.0.0.1:1", "notaurl", "ftp://127.0.0.1:8000", "http://127.0.0.1:99999"]
    ]
    out += [
        Case(("demo", "--live", *a))
        for a in [
            ["--rate-qps", "0"],
            ["--duration-s", "0"],
            ["--time-scale", "-1"],
            ["--pool", "bad"],
            ["--model", "nope"],
        ]
    ]
    out += [
        Case(a)
        for a in [
            ("--bogus",),
            ("nosuchcmd",),
            ("simulate", "--bogus-option", "1"),
            ("simulate", "--rate-qps"),
            ("serve", "--mode", "nope"),
            ("simulate", "extra_arg"),
            ("worker", "--instance-type"),
        ]
    ]
    return out


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


def run_case(case: Case, cwd: Path) -> Outcome:
    with tempfile.TemporaryFile() as err_file:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "kairos", *case.argv],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err_file,
            preexec_fn=_limit_memory,
            env=os.environ | {"PYTHONWARNINGS": "default", "COLUMNS": "100"},
        )
        status: int | None = None
        rss_kb = 0
        while True:
            pid, wait_status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status = os.waitstatus_to_exitcode(wait_status)
                rss_kb = usage.ru_maxrss
                proc.returncode = status
                break
            if time.monotonic() - t0 > case.time_limit_s:
                proc.kill()
                _, wait_status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(wait_status)
                rss_kb = usage.ru_maxrss
                break
            time.sleep(0.05)
        seconds = time.monotonic() - t0
        err_file.seek(0)
        stderr = err_file.read().decode("utf-8", "replace")
    return Outcome(case, classify(status, stderr), status, seconds, rss_kb / 1024, stderr)


def classify(status: int | None, stderr: str) -> str:
    if status is None:
        return "hang"
    if "Traceback" in stderr:
        return "memory" if "MemoryError" in stderr else "traceback"
    if status < 0 or status == 137:
        return "memory"
    if status == 0:
        return "silent"
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    if status == 2 and len(lines) == 1 and lines[0].startswith("error:") and "To fix:" in lines[0]:
        return "ok"
    return "format"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--verbose", action="store_true", help="print every case's stderr")
    args = parser.parse_args()
    from kairos.client.launch import running_router

    router_args = ["--model", "dien", "--pool", "g4dn.xlarge=1,r5n.large=1", "--time-scale", "0.05"]
    with tempfile.TemporaryDirectory() as tmp, running_router(router_args) as router:
        cwd = Path(tmp)
        for name, data in FILES.items():
            (cwd / name).write_bytes(data)
        todo = cases(router.url)
        t0 = time.monotonic()
        with ThreadPoolExecutor(args.jobs) as pool:
            outcomes = list(pool.map(lambda c: run_case(c, cwd), todo))
        wall_s = time.monotonic() - t0
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.kind] = counts.get(o.kind, 0) + 1
        if o.kind != "ok" or args.verbose:
            last = o.stderr.strip().splitlines()[-1:] or ["<no stderr>"]
            print(
                f"[{o.kind}] status {o.status} {o.seconds:.1f}s {o.max_rss_mb:.0f}MB "
                f"kairos {' '.join(o.case.argv)}\n    {last[0][:300]}"
            )
    worst = max(outcomes, key=lambda o: o.max_rss_mb)
    slowest = max(outcomes, key=lambda o: o.seconds)
    print(
        f"\n{len(outcomes)} bad command lines in {wall_s:.0f} s: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    print(f"largest peak memory {worst.max_rss_mb:.0f} MB (kairos {' '.join(worst.case.argv)})")
    print(f"slowest {slowest.seconds:.1f} s (kairos {' '.join(slowest.case.argv)})")
    return 0 if counts.get("ok", 0) == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
