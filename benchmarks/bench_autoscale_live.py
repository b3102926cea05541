"""Live autoscaling against the simulator's autoscaled replay: the figures, printed as ratios.

One trace (a synthetic shape from a seed, in trace seconds) goes through
``kairos.sim.timeline.simulate_timeline`` with an autoscaler, and through a real router on
loopback serving time-scaled replay workers, with the same autoscaler running beside it
(``kairos serve --autoscale``'s loop, ``kairos.control.live``) and the trace sent open-loop
by ``kairos loadgen --trace`` at the compressed time scale. The live router starts on the
pool the simulated run started on (the autoscaler's first decision there); both plan with the
same cloud settings (boot delay, minimum charge) and tick.

For each it prints: cost (the rented pool integrated over the trace's span, billed per second
with the cloud's minimum charge, in trace time), share of queries answered within QoS (a
query refused or never answered is a miss), queries lost, and moves; then live / simulated
(target: cost and share within 15%). Live instances boot as fast as a worker process starts
(about 1-3 s of wall time: divided by the time scale, tens of trace seconds), so ``--boot-s``
should be near that for the simulator to rent as the live run does.

Nothing is asserted: these are timing figures on a shared machine. The exact checks of the
loop are tests/control/test_live.py.

    python benchmarks/bench_autoscale_live.py [--model rm2] [--shape diurnal] [--autoscaler kairos]
        [--duration-s 900] [--trough-qps 8] [--peak-qps 24] [--time-scale 0.1] [--boot-s 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from kairos.catalog import Pool
from kairos.client.admin import http_request
from kairos.control.autoscale import AUTOSCALERS, AutoscaleContext
from kairos.control.live import AutoscaleLoop, LiveAutoscale, LiveSettings
from kairos.protocol.api import HEALTH_READY_PATH
from kairos.scenario import Scenario
from kairos.serving.router.config import RouterConfig
from kairos.serving.router.router import run_router
from kairos.serving.settings import DispatchSettings, HttpSettings
from kairos.sim.autoscale import CloudSettings
from kairos.sim.timeline import TimelineResult, TimelineSettings, simulate_timeline
from kairos.traces import TraceSettings, synthetic_trace, write_trace
from kairos.workload import QueryStream

READY_TIMEOUT_S = 120.0
WATCH_WALL_S = 0.005  # how often the watcher looks whether the router still holds a query


@dataclass(frozen=True)
class Figures:
    cost_dollars: float
    qos_share: float
    queries: int
    lost: int
    moves: int


@dataclass(frozen=True)
class LiveVsSim:
    live: Figures
    sim: Figures
    initial_pool: str

    def ratios(self) -> dict[str, float]:
        live, sim = self.live, self.sim
        return {
            "cost": live.cost_dollars / sim.cost_dollars if sim.cost_dollars else float("nan"),
            "qos_share": live.qos_share / sim.qos_share if sim.qos_share else float("nan"),
        }


def initial_pool(result: TimelineResult) -> Pool:
    """The pool the simulated run started with (booted at t=0)."""
    counts: dict[str, int] = {}
    for r in result.rentals:
        if r.requested_s == result.start_s and r.ready_s == result.start_s:
            counts[r.instance_type] = counts.get(r.instance_type, 0) + 1
    return Pool.of(sorted(counts.items()))


class RouterThread:
    """``run_router`` with the live autoscaler, in a thread with its own event loop."""

    def __init__(self, cfg: RouterConfig, scenario: Scenario, control: LiveAutoscale) -> None:
        self.control = control
        self.url = ""
        self._listening = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, args=(cfg, scenario), daemon=True)

    def _main(self, cfg: RouterConfig, scenario: Scenario) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await run_router(cfg, scenario, self._heard, self._stop, control=self.control)

        asyncio.run(serve())

    def _heard(self, url: str) -> None:
        self.url = url
        self._listening.set()

    def start(self) -> None:
        self._thread.start()
        if not self._listening.wait(READY_TIMEOUT_S):
            raise RuntimeError("the router did not listen")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while http_request(self.url + HEALTH_READY_PATH, timeout_s=2.0)[0] != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the router was not ready")
            time.sleep(0.1)

    @property
    def loop(self) -> AutoscaleLoop:
        assert self.control.loop is not None
        return self.control.loop

    def stop(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)


def run_live(
    scenario: Scenario,
    policy: str,
    stream: QueryStream,
    trace: Path,
    pool: Pool,
    control: LiveAutoscale,
    time_scale: float,
) -> Figures:
    cfg = RouterConfig(
        model=scenario.model,
        pool=pool,
        policy=policy,
        http=HttpSettings(host="127.0.0.1", port=0, max_queue=1_000_000),
        dispatch=DispatchSettings(time_scale=time_scale),
    )
    router = RouterThread(cfg, scenario, control)
    router.start()
    try:
        controls = router.loop.controls
        command = [sys.executable, "-m", "kairos", "loadgen", "--url", router.url]
        command += ["--model", scenario.model, "--trace", str(trace), "--json"]
        sender = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        # The run ends, as the simulator's, when the last query is answered.
        last_busy_s = 0.0
        while sender.poll() is None:
            if controls.in_flight() or controls.queue_length():
                last_busy_s = controls.now_s()
            time.sleep(WATCH_WALL_S)
        out, _ = sender.communicate()
        report = json.loads(out)
        first = controls.first_query_s()
        assert first is not None
        start_s = first - float(stream.arrival_s[0])  # the trace's t=0 on the router's clock
        loop = router.loop
        loop.note_releases()
        cost = loop.rentals.cost_dollars(scenario.prices, control.cloud, start_s, last_busy_s)
    finally:
        router.stop()
    sent = int(report["sent"])
    return Figures(
        cost_dollars=cost,
        qos_share=float(report["qos_met_fraction"]),
        queries=sent,
        lost=sent - int(report["completed"]),
        moves=len(loop.moves),
    )


def live_vs_sim(
    model: str,
    stream: QueryStream,
    autoscaler: str = "kairos",
    *,
    policy: str = "kairos",
    time_scale: float = 0.1,
    cloud: CloudSettings | None = None,
    tick_s: float = LiveSettings.tick_s,
    budget_per_hr: float | None = None,
    seed: int = 0,
) -> LiveVsSim:
    """Run ``stream`` live (loopback, compressed by ``time_scale``) and simulated with the
    same autoscaler and settings; return both runs' figures."""
    scenario = Scenario.build(model)
    cloud = cloud or CloudSettings()
    # Live, the autoscaler sees no trace ahead; the simulated one gets none either.
    context = AutoscaleContext(scenario, policy, cloud, budget_per_hr, trace=None)
    sim = simulate_timeline(
        scenario,
        AUTOSCALERS.get(autoscaler)(context),
        policy,
        stream,
        cloud=cloud,
        settings=replace(TimelineSettings(), tick_s=tick_s),
        seed=seed,
    )
    pool = initial_pool(sim)
    settings = LiveSettings(autoscaler=autoscaler, tick_s=tick_s, budget_per_hr=budget_per_hr)
    control = LiveAutoscale(AUTOSCALERS.get(autoscaler)(context), settings, cloud)
    with tempfile.TemporaryDirectory() as tmp:
        trace = write_trace(stream, Path(tmp) / "trace.csv")
        live = run_live(scenario, policy, stream, trace, pool, control, time_scale)
    return LiveVsSim(
        live=live,
        sim=Figures(sim.cost_dollars, sim.qos_share, sim.queries, sim.unanswered, len(sim.actions)),
        initial_pool=str(pool),
    )


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--model", default="rm2")
    ap.add_argument("--shape", default="diurnal")
    ap.add_argument("--autoscaler", default="kairos")
    ap.add_argument("--duration-s", type=float, default=900.0)
    ap.add_argument("--trough-qps", type=float, default=8.0)
    ap.add_argument("--peak-qps", type=float, default=24.0)
    ap.add_argument("--time-scale", type=float, default=0.1)
    ap.add_argument("--boot-s", type=float, default=30.0)
    ap.add_argument("--min-charge-s", type=float, default=CloudSettings.min_charge_s)
    ap.add_argument("--tick-s", type=float, default=LiveSettings.tick_s)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    scenario = Scenario.build(args.model)
    shape = TraceSettings(
        duration_s=args.duration_s, trough_qps=args.trough_qps, peak_qps=args.peak_qps
    )
    stream = synthetic_trace(args.shape, shape, scenario.mix, seed=args.seed)
    cloud = CloudSettings(default_boot_s=args.boot_s, min_charge_s=args.min_charge_s)
    started = time.monotonic()
    res = live_vs_sim(
        args.model,
        stream,
        args.autoscaler,
        time_scale=args.time_scale,
        cloud=cloud,
        tick_s=args.tick_s,
        seed=args.seed,
    )
    print(
        f"{args.model}, {args.shape} {args.trough_qps:g}-{args.peak_qps:g} q/s over "
        f"{args.duration_s:g} s ({len(stream)} queries), autoscaler {args.autoscaler}, "
        f"time scale {args.time_scale:g}, boot {args.boot_s:g} s, tick {args.tick_s:g} s, "
        f"start pool {res.initial_pool} ({time.monotonic() - started:.0f} s wall)"
    )
    ratios = res.ratios()
    print(f"{'':12}{'live':>12}{'simulated':>12}{'live/sim':>10}")
    live, sim = res.live, res.sim
    print(f"{'cost $':12}{live.cost_dollars:12.4f}{sim.cost_dollars:12.4f}{ratios['cost']:10.3f}")
    print(f"{'QoS share':12}{live.qos_share:12.4f}{sim.qos_share:12.4f}{ratios['qos_share']:10.3f}")
    print(f"{'lost':12}{live.lost:12d}{sim.lost:12d}")
    print(f"{'moves':12}{live.moves:12d}{sim.moves:12d}")


if __name__ == "__main__":
    main()
