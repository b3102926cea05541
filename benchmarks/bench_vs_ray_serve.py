"""Kairos beside Ray Serve, live: the same pool, the same replay workers, the same load.

The reference pool (dien, 2 x g4dn.xlarge + 9 x r5n.large, QoS 35 ms, production mix,
replay at real time unless ``--time-scale``) is served, one variant after the other, by:

  kairos            ``kairos serve``, policy kairos (``--kairos-backend``: ray when that
                    backend is registered, else local worker processes);
  rs-types          Ray Serve as its users deploy it: one deployment per instance type,
                    replicas placed by the types' resources, ``max_ongoing_requests=1``,
                    behind Ray Serve's HTTP proxy, an ingress splitting traffic between the
                    type deployments by capacity, Ray Serve's default router (power of two
                    choices) inside each;
  rs-pool           Ray Serve, one deployment over the whole pool (its default router then
                    chooses among all instances: the simulator's power-of-two);
  rs-gpu            Ray Serve on the best single-type pool within the same budget
                    (4 x g4dn.xlarge), one deployment, default router;
  rs-kairos-router  rs-pool with a custom request router applying Kairos's policy to each
                    request (benchmarks/rayserve_router.py).

Ray Serve runs on a local Ray cluster of one node per instance type. Everything runs in a
private network namespace (loopback only); the script enters one itself when started outside
one (needs root, ``unshare`` and ``ip``).

Every variant gets the same open-loop load generator (``kairos.client.loadgen``, the same
KServe v2 requests) and the same allowable-throughput search as ``bench_live.py``
(``find_capacity`` from the simulated figure, step 1.2); a variant the simulator says never
holds QoS is first tried at ``--floor-qps`` and counts 0 if it fails there. Printed per
variant, in one run: live allowable throughput (99% within QoS), p50/p99 latency at a common
rate (default 90% of the lowest non-zero allowable, in a second pass), router-added latency
(client latency minus the replica's service time and the queue time the router reports, at
a light rate where queries rarely wait), CPU per query of the serving processes (every
process in the namespace but this one, from /proc) at the common rate, and the ratios. Last
line: ``kairos / ray serve (best deployment): N.NNx``.

    python benchmarks/bench_vs_ray_serve.py [--variants kairos,rs-types,rs-pool,rs-gpu,
        rs-kairos-router] [--time-scale 1] [--trial-queries 5500] [--precision 0.02]
        [--common-rate-qps R] [--light-rate-qps 40] [--kairos-backend local|ray]
        [--kairos-serve-arg ARG ...] [--json]

On a small machine Ray Serve's own CPU per query decides at real time; ``--time-scale 4``
lets the routing decide (docs/ray_serve.md has figures of both).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks.* when run as a file

from benchmarks.rayserve_app import (  # noqa: E402
    PROBE_LINE,
    READY_LINE,
    in_private_netns,
    netns_command,
    netns_missing,
    ray_serve_missing,
)
from kairos.aio import run_event_loop  # noqa: E402
from kairos.catalog import Pool  # noqa: E402
from kairos.client.launch import running_router  # noqa: E402
from kairos.client.loadgen import LoadReport, LoadSpec, find_capacity, run_load  # noqa: E402
from kairos.scenario import Scenario  # noqa: E402
from kairos.serving.pool.base import POOL_BACKENDS  # noqa: E402
from kairos.sim.capacity import allowable_throughput  # noqa: E402
from kairos.workload import production_mix  # noqa: E402

MODEL = "dien"
POOL = "g4dn.xlarge=2,r5n.large=9"
GPU_POOL = "g4dn.xlarge=4"  # the best single-type pool within the same $2.5/h budget
KAIROS_BACKEND = "ray" if "ray" in POOL_BACKENDS.names() else "local"
READY_TIMEOUT_S = 300.0
TIMEOUT_QOS = 100.0  # client timeout per query, in QoS
assert PROBE_LINE  # the app module's self-test line; the bench reads READY_LINE only


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    pool: str
    sim_policy: str  # what the simulator calls this routing
    layout: str = ""  # Ray Serve variants only
    router: str = "default"

    @property
    def ray_serve(self) -> bool:
        return bool(self.layout)


VARIANTS = {
    v.key: v
    for v in (
        Variant("kairos", "kairos (kairos serve)", POOL, "kairos"),
        Variant("rs-types", "ray serve, deployment per type", POOL, "power-of-two", "per-type"),
        Variant("rs-pool", "ray serve, one deployment", POOL, "power-of-two", "pooled"),
        Variant("rs-gpu", "ray serve, 4 x g4dn.xlarge", GPU_POOL, "power-of-two", "per-type"),
        Variant(
            "rs-kairos-router",
            "ray serve + kairos-cost router",
            POOL,
            "kairos",
            "pooled",
            "kairos-cost",
        ),
    )
}
USER_DEPLOYMENTS = ("rs-types", "rs-pool", "rs-gpu")  # Ray Serve as its users deploy it


@dataclass(frozen=True)
class Result:
    key: str
    label: str
    pool: str
    cost_per_hr: float
    simulated_qps: float
    allowable_qps: float
    common: LoadReport | None
    light: LoadReport | None
    cpu_ms_per_query: float


def say(text: str) -> None:
    print(text, flush=True)


# --- serving processes and their CPU ---------------------------------------------------------


def _netns() -> str:
    return os.readlink("/proc/self/ns/net")


def serving_pids() -> list[int]:
    """Every process in this network namespace except this one and its ancestors."""
    mine, skip = _netns(), {os.getpid()}
    pid = os.getppid()
    while pid > 1:
        skip.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in skip:
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{name}/ns/net") == mine:
                out.append(int(name))
    return out


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


@contextlib.contextmanager
def cpu_meter() -> Iterator[Callable[[], float]]:
    """Yields a function giving the CPU seconds the serving processes used since entry."""
    before = cpu_seconds(serving_pids())

    def used() -> float:
        after = cpu_seconds(serving_pids())
        return sum(t - before.get(pid, 0.0) for pid, t in after.items())

    yield used


# --- the systems under test ------------------------------------------------------------------


@contextlib.contextmanager
def serving(variant: Variant, args: argparse.Namespace, port: int) -> Iterator[str]:
    """Start the variant's serving system; yield its URL; stop it and everything it left."""
    if not variant.ray_serve:
        serve_args = [
            "--model",
            MODEL,
            "--pool",
            variant.pool,
            "--policy",
            "kairos",
            "--max-queue",
            "100000",
            "--time-scale",
            str(args.time_scale),
            "--backend",
            args.kairos_backend,
            *args.kairos_serve_arg,
        ]
        with running_router(serve_args, ready_timeout_s=READY_TIMEOUT_S) as router:
            say(f"  kairos serve at {router.url}")
            yield router.url
        return
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.rayserve_app",
        "--model",
        MODEL,
        "--pool",
        variant.pool,
        "--layout",
        variant.layout,
        "--router",
        variant.router,
        "--time-scale",
        str(args.time_scale),
        "--port",
        str(port),
    ]
    log = open(args.log_dir / f"{variant.key}.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        t0 = time.perf_counter()
        url = _wait_ready(proc, variant)
        say(f"  ray serve at {url} after {time.perf_counter() - t0:.0f} s")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        _reap_leftovers()
        log.close()


def _wait_ready(proc: subprocess.Popen[str], variant: Variant) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT_S
    for line in proc.stdout:
        if line.startswith(READY_LINE):
            return line.split()[1]
        if time.monotonic() > deadline:
            break
    raise SystemExit(
        f"{variant.key}: Ray Serve did not come up (see its log); status {proc.poll()}"
    )


def _reap_leftovers() -> None:
    """Stop what a stopped cluster left in this namespace (ours by construction)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = serving_pids()
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        time.sleep(2.0)


# --- measuring one variant -------------------------------------------------------------------


def measure(variant: Variant, args: argparse.Namespace, sim_qps: float, port: int) -> Result:
    """First pass: the allowable-throughput search and the light-rate run."""
    scenario = Scenario.build(MODEL)
    pool = Pool.parse(variant.pool)
    say(
        f"{variant.label} on {variant.pool} (${pool.cost_per_hr(scenario.prices):.2f}/h); "
        f"simulated allowable ({variant.sim_policy}): {sim_qps:.1f} q/s"
    )
    with serving(variant, args, port) as url:
        spec = load_spec(url, max(sim_qps, args.floor_qps), args)
        allowable = search(spec, sim_qps, args)
        light, _ = one_run(
            replace(spec, seed=3), args.light_rate_qps, args.light_queries, "light rate"
        )
    cost = pool.cost_per_hr(scenario.prices)
    return Result(
        variant.key, variant.label, variant.pool, cost, sim_qps, allowable, None, light, math.nan
    )


def at_common_rate(result: Result, args: argparse.Namespace, port: int) -> Result:
    """Second pass: latency and serving CPU per query at the rate common to all variants."""
    variant = VARIANTS[result.key]
    say(f"{variant.label} at the common rate:")
    with serving(variant, args, port) as url:
        spec = load_spec(url, args.common_rate_qps, args)
        common, cpu_s = one_run(
            replace(spec, seed=2),
            args.common_rate_qps,
            args.trial_queries,
            "common rate",
            meter=True,
        )
    cpu_ms = cpu_s * 1000.0 / common.completed if common.completed else math.nan
    return replace(result, common=common, cpu_ms_per_query=cpu_ms)


def load_spec(url: str, rate: float, args: argparse.Namespace) -> LoadSpec:
    binary = args.tensors == "binary"
    # A query this late has long missed QoS: waiting longer only slows overloaded trials.
    timeout_s = max(5.0, TIMEOUT_QOS * Scenario.build(MODEL).qos_ms / 1000.0 * args.time_scale)
    return LoadSpec(
        url, MODEL, rate, 1.0, production_mix(), seed=1, binary=binary, request_timeout_s=timeout_s
    )


def show(t: LoadReport) -> None:
    say(
        f"  trial {t.rate_qps:7.1f} q/s: within QoS {t.qos_met_fraction:7.2%}, p50 "
        f"{t.p50_ms:6.1f} ms, p99 {t.p99_ms:6.1f} ms, router-added p99 "
        f"{t.overhead_p99_ms:5.2f} ms, errors {t.errors} -> "
        f"{'pass' if t.passed else 'fail'}" + (f" (statuses {t.status_counts})" if t.errors else "")
    )


def search(spec: LoadSpec, sim_qps: float, args: argparse.Namespace) -> float:
    """bench_live.py's search (from the simulated figure); a floor trial first when the
    simulator says the routing never holds QoS, so that case costs one trial, not ten."""
    guess = sim_qps
    if sim_qps <= 0:
        floor = run_event_loop(
            run_load(
                replace(
                    spec, rate_qps=args.floor_qps, duration_s=args.floor_queries / args.floor_qps
                )
            )
        )
        show(floor)
        if not floor.passed:
            say(f"  misses QoS even at {args.floor_qps:g} q/s: allowable 0")
            return 0.0
        guess = args.floor_qps
    seconds = min(60.0, max(5.0, args.trial_queries / guess))
    res = run_event_loop(
        find_capacity(
            replace(spec, rate_qps=guess, duration_s=seconds),
            precision=args.precision,
            guess_qps=guess,
            step=1.2,
            progress=show,
        )
    )
    say(f"  live allowable: {res.allowable_qps:.1f} q/s")
    return res.allowable_qps


def one_run(
    spec: LoadSpec, rate: float, queries: int, what: str, meter: bool = False
) -> tuple[LoadReport, float]:
    run = replace(spec, rate_qps=rate, duration_s=queries / rate)
    with cpu_meter() as used:
        rep = run_event_loop(run_load(run))
        cpu_s = used() if meter else math.nan
    say(
        f"  {what} {rate:.1f} q/s: within QoS {rep.qos_met_fraction:.2%}, p50 {rep.p50_ms:.1f}"
        f" ms, p99 {rep.p99_ms:.1f} ms, router-added p50 {rep.overhead_p50_ms:.2f} / p99 "
        f"{rep.overhead_p99_ms:.2f} ms, errors {rep.errors}"
        + (f", serving CPU {cpu_s * 1000 / max(rep.completed, 1):.2f} ms/query" if meter else "")
    )
    return rep, cpu_s


# --- the report ------------------------------------------------------------------------------


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "inf (the other never holds QoS)"


def report(results: list[Result], common_qps: float, light_qps: float, seconds: float) -> None:
    say("")
    say(
        f"{'variant':34} {'pool':27} {'$/h':>5} {'sim q/s':>8} {'live q/s':>9} "
        f"{'in QoS':>7} {'p50/p99 ms':>12} {'added p50/p99 ms':>17} {'CPU ms/q':>9}"
    )
    for r in results:
        c, lt = r.common, r.light
        lat = f"{c.p50_ms:5.1f}/{c.p99_ms:5.1f}" if c else "-"
        within = f"{c.qos_met_fraction:7.2%}" if c else "-"
        added = f"{lt.overhead_p50_ms:5.2f}/{lt.overhead_p99_ms:6.2f}" if lt else "-"
        say(
            f"{r.label:34} {r.pool:27} {r.cost_per_hr:5.2f} {r.simulated_qps:8.1f} "
            f"{r.allowable_qps:9.1f} {within:>7} {lat:>12} {added:>17} {r.cpu_ms_per_query:9.2f}"
        )
    say(
        f"(in QoS and latency: at the common rate {common_qps:.1f} q/s; router-added, wall ms: at "
        f"{light_qps:.1f} q/s; QoS 35 ms)"
    )
    by = {r.key: r for r in results}
    kairos = by.get("kairos")
    for r in results:
        if kairos is not None and r.key != "kairos":
            say(
                f"kairos / {r.label}: allowable {ratio(kairos.allowable_qps, r.allowable_qps)}"
                f", CPU per query {ratio(kairos.cpu_ms_per_query, r.cpu_ms_per_query)}"
            )
    if kairos is not None and kairos.light is not None:
        others = [r for r in results if r.key in USER_DEPLOYMENTS and r.light is not None]
        if others:
            rs99 = min(r.light.overhead_p99_ms for r in others if r.light is not None)
            ok = "met" if kairos.light.overhead_p99_ms <= rs99 else "NOT met"
            say(
                f"router-added p99: kairos {kairos.light.overhead_p99_ms:.2f} ms, ray serve "
                f"(lowest) {rs99:.2f} ms: target {ok}"
            )
    users = [r for r in results if r.key in USER_DEPLOYMENTS]
    if kairos is not None and users:
        best = max(users, key=lambda r: r.allowable_qps)
        say(f"best ray serve deployment: {best.label} ({best.allowable_qps:.1f} q/s)")
        say(f"bench took {seconds:.0f} s (shared machine: figures are noisy)")
        if best.allowable_qps > 0:
            gain = kairos.allowable_qps / best.allowable_qps
            say(f"kairos / ray serve (best deployment): {gain:.2f}x")
        else:
            say("kairos / ray serve (best deployment): inf (no Ray Serve deployment held QoS)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, from {', '.join(VARIANTS)}",
    )
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="replay service times x this (1 = real time)"
    )
    parser.add_argument("--trial-queries", type=int, default=5500)
    parser.add_argument("--precision", type=float, default=0.02)
    parser.add_argument(
        "--common-rate-qps",
        type=float,
        default=0.0,
        help="default: 90%% of the lowest positive live allowable throughput",
    )
    parser.add_argument("--light-rate-qps", type=float, default=40.0)
    parser.add_argument("--light-queries", type=int, default=1000)
    parser.add_argument("--floor-qps", type=float, default=25.0)
    parser.add_argument("--floor-queries", type=int, default=500)
    parser.add_argument("--tensors", choices=("binary", "json"), default="binary")
    parser.add_argument("--kairos-backend", choices=POOL_BACKENDS.names(), default=KAIROS_BACKEND)
    parser.add_argument(
        "--kairos-serve-arg",
        action="append",
        default=[],
        help="extra kairos serve argument, e.g. --kairos-serve-arg=--address=..",
    )
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp/kairos-vs-ray-serve"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    keys = [k.strip() for k in args.variants.split(",") if k.strip()]
    unknown = [k for k in keys if k not in VARIANTS]
    if unknown or not keys:
        parser.error(
            f"--variants {args.variants!r}: unknown {unknown}; pick from {', '.join(VARIANTS)}"
        )
    args.variant_keys = keys
    return args


def enter_netns_or_exit() -> None:
    """Re-run this script in a fresh network namespace unless already in a private one."""
    if in_private_netns():
        return
    why = netns_missing()
    if why:
        raise SystemExit(
            f"bench_vs_ray_serve: {why}. To fix: run as root on Linux with "
            "util-linux and iproute2 (every server here must stay on loopback)."
        )
    say("entering a private network namespace (loopback only)")
    cmd = netns_command([sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]])
    os.execvp(cmd[0], cmd)


def main() -> None:
    args = parse_args()
    if any(VARIANTS[k].ray_serve for k in args.variant_keys) and ray_serve_missing():
        raise SystemExit(
            f"bench_vs_ray_serve: {ray_serve_missing()}. To fix: install it, or "
            "pass --variants kairos."
        )
    enter_netns_or_exit()
    args.log_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    scenario = Scenario.build(MODEL)
    say(
        f"{MODEL}, QoS {scenario.qos_ms:g} ms, production mix, time scale {args.time_scale:g},"
        f" kairos backend {args.kairos_backend}; logs in {args.log_dir}"
    )
    sims: dict[tuple[str, str], float] = {}
    for v in [VARIANTS[k] for k in args.variant_keys]:
        if (v.pool, v.sim_policy) not in sims:
            sims[(v.pool, v.sim_policy)] = allowable_throughput(
                scenario, Pool.parse(v.pool), v.sim_policy, queries=5000
            ).allowable_qps
    results = []
    for k, key in enumerate(args.variant_keys):
        v = VARIANTS[key]
        results.append(measure(v, args, sims[(v.pool, v.sim_policy)], 8000 + k))
    if args.common_rate_qps <= 0:
        held = [r.allowable_qps for r in results if r.allowable_qps > 0]
        # Every variant that holds QoS at all carries this rate: 90% of the lowest allowable.
        args.common_rate_qps = round(0.9 * min(held), 1) if held else args.floor_qps
    say(f"common rate: {args.common_rate_qps:.1f} q/s")
    n = len(results)
    results = [at_common_rate(r, args, 8000 + n + k) for k, r in enumerate(results)]
    report(results, args.common_rate_qps, args.light_rate_qps, time.perf_counter() - t0)
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2, default=str))


if __name__ == "__main__":
    main()
