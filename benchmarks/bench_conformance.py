"""Live router against the simulator near capacity: the figures, printed as ratios.

The same seeded arrivals and batch sizes (rm2, ``g4dn.xlarge=1,r5n.large=2``, Poisson at
0.9 x the pool's simulated allowable throughput, 1500 queries, seed 11) go through
``simulate`` and through a real router serving time-scaled replay workers (time scale 0.25).
Near capacity queueing, not idle capacity, decides the latency tail, so a router that
dispatched worse than the simulator's driver, or a simulator that flattered the policy, shows
here. For each backend and policy it prints live and simulated throughput, p99 latency and
share of queries within QoS, and the ratios live / simulated (1.0 = the same; the share as a
difference in points).

These are timing figures: the workers sleep their service times on this machine's clock and
share its cores with the router and the load generator, so a busy or jittery host moves them
(on an idle 2-core machine: p99 within about 3%, shares within 0.3 points). Nothing here is
asserted; the exact check that the router dispatches as the simulator does, query by query,
is ``tests/serving/router/test_router_driver.py``, and that a live run near capacity answers
every query is ``tests/serving/test_conformance.py``.

``--backend ray`` serves the instances as Ray actors on a local test cluster (a head node and
one node per instance type, ``tests.serving.ray.helpers.typed_cluster``), the way the Ray
tests do: the benchmark first moves into a private network namespace with loopback only
(Linux, root; ``tests.netns``) unless it already runs in one, so Ray binds 127.0.0.1.

    python benchmarks/bench_conformance.py [--backend local|ray|both] [--policies fcfs,kairos]
        [--queries 1500] [--load 0.9] [--time-scale 0.25] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from kairos.aio import run_event_loop
from kairos.catalog import Pool
from kairos.client.launch import running_router
from kairos.client.loadgen import LoadSpec, run_load
from kairos.scenario import Scenario
from kairos.sim.capacity import allowable_throughput
from kairos.sim.engine import simulate
from kairos.workload import poisson_stream

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.* when run as a file
from tests.serving.helpers import wait_for_quiet_cpu  # noqa: E402

MODEL = "rm2"
POOL = "g4dn.xlarge=1,r5n.large=2"
SEED = 11
QUERIES = 1500
LOAD = 0.9  # of the simulated allowable throughput
TIME_SCALE = 0.25
RAY_READY_TIMEOUT_S = 120.0  # a Ray router places and starts its actors before it answers
LOCAL_READY_TIMEOUT_S = 60.0


def say(text: str) -> None:
    print(text, flush=True)


@dataclass(frozen=True)
class Figures:
    """One run's throughput, p99 latency and share of queries within QoS."""

    throughput_qps: float
    p99_ms: float
    qos_met_fraction: float


@dataclass(frozen=True)
class Conformance:
    """Live and simulated figures of one backend and policy at one offered rate."""

    backend: str
    policy: str
    rate_qps: float
    sent: int
    completed: int
    live: Figures
    sim: Figures

    @property
    def throughput_ratio(self) -> float:
        return self.live.throughput_qps / self.sim.throughput_qps

    @property
    def p99_ratio(self) -> float:
        return self.live.p99_ms / self.sim.p99_ms

    @property
    def qos_share_points(self) -> float:
        return 100.0 * (self.live.qos_met_fraction - self.sim.qos_met_fraction)

    def line(self) -> str:
        return (
            f"[{self.backend} {self.policy}] at {self.rate_qps:.1f} q/s: live "
            f"{self.live.throughput_qps:.2f} q/s, p99 {self.live.p99_ms:.1f} ms, within QoS "
            f"{self.live.qos_met_fraction:.3f} | sim {self.sim.throughput_qps:.2f} q/s, p99 "
            f"{self.sim.p99_ms:.1f} ms, within QoS {self.sim.qos_met_fraction:.3f} | live/sim: "
            f"throughput {self.throughput_ratio:.3f}, p99 {self.p99_ratio:.3f}, within QoS "
            f"{self.qos_share_points:+.2f} points; answered {self.completed}/{self.sent}"
        )


def measure(
    backend: str,
    policy: str,
    backend_args: Sequence[str],
    settings: argparse.Namespace,
    ready_timeout_s: float,
    on_ready: Callable[[str, int], object] | None = None,
) -> Conformance:
    """Serve ``POOL`` with ``policy``, send the simulator's seeded queries, compare."""
    scenario = Scenario.build(MODEL)
    pool = Pool.parse(POOL)
    rate = settings.load * allowable_throughput(scenario, pool, policy).allowable_qps
    stream = poisson_stream(rate, settings.queries, scenario.mix, np.random.default_rng(SEED))
    warmup = settings.queries // 10
    records = simulate(scenario, pool, policy, stream, seed=SEED).records
    sim = records.metrics(scenario.qos_ms, warmup)
    args = [
        *("--model", MODEL, "--pool", POOL, "--policy", policy),
        *("--time-scale", str(settings.time_scale), "--seed", str(SEED)),
        *backend_args,
    ]
    with running_router(args, ready_timeout_s=ready_timeout_s) as router:
        if on_ready is not None:
            on_ready(router.url, pool.size)
        # A router or cluster that has just said it is up keeps importing and spawning for a
        # few seconds: that would show as queueing the simulator never had.
        wait_for_quiet_cpu()
        spec = LoadSpec(router.url, MODEL, rate, 0.0, scenario.mix, seed=SEED)
        live = run_event_loop(run_load(spec, stream=stream))
    return Conformance(
        backend,
        policy,
        rate,
        live.sent,
        live.completed,
        Figures(live.throughput_qps, live.p99_ms, live.qos_met_fraction),
        Figures(sim.throughput_qps, sim.p99_ms, sim.qos_met_fraction),
    )


def private_network_for_ray() -> None:
    """Ray binds the machine's own address unless nothing but loopback exists."""
    from tests.netns import NamespaceUnavailable, enter_loopback_namespace, only_loopback_interfaces

    if only_loopback_interfaces():
        return
    try:
        enter_loopback_namespace()  # first thing, so the whole process is inside
    except NamespaceUnavailable as exc:
        raise SystemExit(f"--backend ray needs a loopback-only network namespace: {exc}") from None
    say("running in a private network namespace (loopback only) for Ray")


@contextlib.contextmanager
def ray_backend() -> Iterator[tuple[list[str], Callable[[str, int], object]]]:
    """The router arguments of the Ray backend on a fresh typed test cluster, and the wait
    until every instance actor is up."""
    from tests.serving.ray.helpers import typed_cluster, wait_until_up

    with typed_cluster() as cluster:
        say(f"Ray test cluster up at {cluster.address}")
        yield ["--backend", "ray", "--address", cluster.address], wait_until_up


def run(settings: argparse.Namespace) -> list[Conformance]:
    backends = ["local", "ray"] if settings.backend == "both" else [settings.backend]
    policies = [p.strip() for p in settings.policies.split(",") if p.strip()]
    results: list[Conformance] = []
    if "local" in backends:
        for policy in policies:
            results.append(measure("local", policy, [], settings, LOCAL_READY_TIMEOUT_S))
            say(results[-1].line())
    if "ray" in backends:
        with ray_backend() as (args, on_ready):
            for policy in policies:
                results.append(
                    measure("ray", policy, args, settings, RAY_READY_TIMEOUT_S, on_ready)
                )
                say(results[-1].line())
    return results


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--backend", choices=("local", "ray", "both"), default="both")
    ap.add_argument("--policies", default="fcfs,kairos", help="comma-separated policy names")
    ap.add_argument("--queries", type=int, default=QUERIES)
    ap.add_argument("--load", type=float, default=LOAD, help="share of the simulated capacity")
    ap.add_argument("--time-scale", type=float, default=TIME_SCALE)
    ap.add_argument("--json", action="store_true")
    return ap.parse_args()


def main() -> None:
    settings = parse_args()
    if settings.backend != "local":
        private_network_for_ray()
    t0 = time.perf_counter()
    say(
        f"{MODEL} on {POOL}: {settings.queries} seeded queries at {settings.load:g} x the "
        f"simulated allowable throughput, time scale {settings.time_scale:g}"
    )
    results = run(settings)
    say(f"bench took {time.perf_counter() - t0:.0f} s")
    if settings.json:
        rows = [
            asdict(r)
            | {
                "throughput_ratio": r.throughput_ratio,
                "p99_ratio": r.p99_ratio,
                "qos_share_points": r.qos_share_points,
            }
            for r in results
        ]
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
