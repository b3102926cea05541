"""Re-planning, live: the router's observed mix follows a shift in the load, ``kairos advise``
proposes a pool for the new mix, ``kairos scale`` applies it, and the live allowable
throughput moves as the simulator predicted.

On loopback, with replay workers at real time (``--time-scale 1``, the default: rates and
windows are in wall seconds; ``--time-scale S`` runs the workers S times faster and keeps
rates in profile time), serving dien (QoS 35 ms):

  1. the pool planned for the first mix within the budget (``allocator.plan``): what a team
     runs for its usual traffic (``--mix-before production``, ``--budget-per-hr 1``: one
     g4dn.xlarge for the large batches and three r5n.large);
  2. drive that mix for one window (``--traffic-window-s``), then shift to ``--mix-after``
     (default ``fixed:200``: the large-batch tail is gone, so CPU instances can serve every
     query and the GPU is the wrong buy) in one-second bursts, reading ``GET
     /v2/traffic`` after each until the observed mix is the new one alone (at most
     ``FOLLOW_WINDOWS`` windows): prints how long the view took to follow;
  3. ``advise`` (the library call behind ``kairos advise``) on that view: the running pool
     and the best pool for the observed mix within the budget, both simulated, and the
     predicted gain;
  4. the live allowable throughput of the running pool on the new mix
     (``loadgen.find_capacity``, the search bench_live.py runs), then ``kairos scale`` to
     the proposal (the CLI, through the router's admin endpoint), a wait until the pool is
     the proposal with every instance up and none draining, and the live allowable
     throughput again;
  5. measured gain (after / before, one run) against the predicted gain, and live against
     simulated for both pools.

Every load loop is bounded: each burst and trial by its duration (a trial by
``MAX_TRIAL_S`` and the load generator's query cap), the follow loop by its count, the
searches by ``search_rate``'s step cap.

    python benchmarks/bench_replan.py [--budget-per-hr 1] [--mix-before production]
        [--mix-after fixed:200] [--rate-before 100] [--rate-after 0] [--traffic-window-s 5]
        [--precision 0.05] [--min-queries 1000] [--time-scale 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import subprocess
import sys
import time
from typing import Any

from kairos import allocator
from kairos.aio import run_event_loop
from kairos.catalog import Pool
from kairos.client.admin import fetch_traffic
from kairos.client.launch import RouterProcess, running_router
from kairos.client.loadgen import CapacityReport, LoadReport, LoadSpec, find_capacity, run_load
from kairos.control.advise import Advice, advise, observed_scenario
from kairos.scenario import Scenario
from kairos.sim.capacity import Measurement
from kairos.workload import BatchMix, parse_mix

MODEL = "dien"
POLICY = "kairos"
BURST_S = 1.0  # the load after the shift is sent in bursts this long, the view read after each
FOLLOW_WINDOWS = 4  # give up if the view has not followed within this many windows
RESIZE_TIMEOUT_S = 120.0
SIM_QUERIES = 3000  # the default measurement of every command


def say(text: str) -> None:
    print(text, flush=True)


def burst(url: str, mix: BatchMix, rate_qps: float, seconds: float, seed: int) -> LoadReport:
    report = run_event_loop(run_load(LoadSpec(url, MODEL, rate_qps, seconds, mix, seed=seed)))
    if report.errors:
        raise SystemExit(f"{report.errors} errors while driving {mix.name} at {rate_qps:g} q/s")
    return report


def follow_shift(url: str, mix: BatchMix, rate_qps: float, window_s: float) -> tuple[float, dict]:
    """Send the new mix in bursts until the router's view holds its batch sizes alone; the
    seconds of load it took (profile time) and the view."""
    want = sorted(int(b) for b in mix.support[mix.probs > 0])
    sent_s = 0.0
    for k in range(math.ceil(FOLLOW_WINDOWS * window_s / BURST_S)):
        burst(url, mix, rate_qps, BURST_S, seed=100 + k)
        sent_s += BURST_S
        view = fetch_traffic(url)
        observed = sorted((view.get("mix") or {}).get("batch_size") or [])
        say(
            f"  after {sent_s:4.1f} s of {mix.name}: observed {view['queries']} queries, "
            f"mean batch {view['mean_batch'] or 0:.0f}, {view['rate_qps']:.1f} q/s"
        )
        if observed == want:
            return sent_s, view
    raise SystemExit(f"the observed mix did not follow within {FOLLOW_WINDOWS} windows")


def live_capacity(
    url: str, mix: BatchMix, guess_qps: float, args: argparse.Namespace
) -> CapacityReport:
    def show(t: LoadReport) -> None:
        say(
            f"    trial {t.rate_qps:7.1f} q/s: within QoS {t.qos_met_fraction:7.2%}, "
            f"p99 {t.p99_ms:6.1f} ms -> {'pass' if t.passed else 'fail'}"
        )

    spec = LoadSpec(url, MODEL, guess_qps, 1.0, mix, seed=7)
    return run_event_loop(
        find_capacity(
            spec,
            precision=args.precision,
            guess_qps=guess_qps,
            step=1.2,
            min_queries=args.min_queries,
            progress=show,
        )
    )


def scale_to(router: RouterProcess, pool: Pool) -> float:
    """``kairos scale`` to ``pool``; wait until it is the active pool, every instance is up
    and none is draining. Returns the seconds it took."""
    start = time.monotonic()
    cmd = [sys.executable, "-m", "kairos", "scale", "--url", router.url, "--pool", str(pool)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=RESIZE_TIMEOUT_S)
    if done.returncode != 0:
        raise SystemExit(f"kairos scale failed: {done.stderr.strip()[-300:]}")
    for line in done.stdout.splitlines():
        say(f"  {line}")
    while time.monotonic() - start < RESIZE_TIMEOUT_S:
        status, text = router.get("/v2/admin/pool")
        doc = json.loads(text) if status == 200 else {}
        live = [w for w in doc.get("workers", []) if w["state"] != "removed"]
        if (
            doc.get("pool") == str(pool)
            and len(live) == pool.size
            and all(w["up"] and w["state"] != "draining" for w in live)
        ):
            return time.monotonic() - start
        time.sleep(0.2)
    raise SystemExit(f"the pool did not become {pool} within {RESIZE_TIMEOUT_S:g} s")


def show_advice(a: Advice) -> None:
    say(
        f"  running  {a.running_pool} (${a.running_cost_per_hr:.3f}/h): "
        f"simulated {a.running_allowable_qps:.1f} q/s on the observed mix"
    )
    say(
        f"  proposed {a.proposed_pool} (${a.proposed_cost_per_hr:.3f}/h): "
        f"simulated {a.proposed_allowable_qps:.1f} q/s; predicted gain {a.gain:.3f}x"
    )
    say(f"  apply with: {a.scale_command}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    before_mix, after_mix = parse_mix(args.mix_before), parse_mix(args.mix_after)
    morning = Scenario.build(MODEL, mix=before_mix)
    m = Measurement(queries=SIM_QUERIES)
    start_pool = allocator.plan(morning, args.budget_per_hr, policy=POLICY, measurement=m).pool
    say(f"pool planned for {before_mix.name} within ${args.budget_per_hr:g}/h: {start_pool}")
    serve = [
        "--model",
        MODEL,
        "--pool",
        str(start_pool),
        "--policy",
        POLICY,
        "--traffic-window-s",
        f"{args.traffic_window_s:g}",
        "--time-scale",
        f"{args.time_scale:g}",
        "--max-queue",
        "100000",
    ]
    with running_router(serve, ready_timeout_s=120) as router:
        say(f"driving {before_mix.name} at {args.rate_before:g} q/s for one window")
        burst(router.url, before_mix, args.rate_before, args.traffic_window_s + 1.0, seed=1)
        first = fetch_traffic(router.url)
        say(f"  observed mean batch {first['mean_batch']:.0f} at {first['rate_qps']:.1f} q/s")
        rate_after = args.rate_after or 0.6 * allocator_capacity(after_mix, start_pool)
        say(f"shifting to {after_mix.name} at {rate_after:.1f} q/s")
        follow_s, view = follow_shift(router.url, after_mix, rate_after, args.traffic_window_s)
        say(f"the observed mix followed after {follow_s:g} s (window {args.traffic_window_s:g} s)")
        t0 = time.monotonic()
        advice = advise(
            view,
            observed_scenario(view),
            router.url,
            budget_per_hr=args.budget_per_hr,
            queries=SIM_QUERIES,
        )
        say(f"advise (library call, {time.monotonic() - t0:.1f} s):")
        show_advice(advice)
        if not advice.changed:
            raise SystemExit("the advice keeps the running pool: nothing to measure")
        say(f"live allowable throughput of {advice.running_pool} on {after_mix.name}:")
        before = live_capacity(router.url, after_mix, advice.running_allowable_qps, args)
        resize_s = scale_to(router, advice.proposed_pool)
        say(f"scaled in {resize_s:.1f} s; live allowable of {advice.proposed_pool}:")
        after = live_capacity(router.url, after_mix, advice.proposed_allowable_qps, args)
    return figures(args, start_pool, follow_s, advice, before, after, resize_s)


def allocator_capacity(mix: BatchMix, pool: Pool) -> float:
    """The simulated allowable throughput of ``pool`` on ``mix`` (for the default rate)."""
    from kairos.sim.capacity import allowable_throughput

    return allowable_throughput(Scenario.build(MODEL, mix=mix), pool, POLICY).allowable_qps


def figures(
    args: argparse.Namespace,
    start_pool: Pool,
    follow_s: float,
    advice: Advice,
    before: CapacityReport,
    after: CapacityReport,
    resize_s: float,
) -> dict[str, Any]:
    live_gain = after.allowable_qps / before.allowable_qps if before.allowable_qps else math.inf
    out = {
        "time_scale": args.time_scale,
        "budget_per_hr": args.budget_per_hr,
        "mix_before": args.mix_before,
        "mix_after": args.mix_after,
        "traffic_window_s": args.traffic_window_s,
        "follow_s": follow_s,
        "start_pool": str(start_pool),
        "advice": advice.as_dict(),
        "resize_s": resize_s,
        "live_before_qps": before.allowable_qps,
        "live_after_qps": after.allowable_qps,
        "predicted_gain": advice.gain,
        "measured_gain": live_gain,
        "measured_over_predicted": live_gain / advice.gain,
        "live_over_sim_before": before.allowable_qps / advice.running_allowable_qps,
        "live_over_sim_after": after.allowable_qps / advice.proposed_allowable_qps,
    }
    say("")
    say(f"the view followed after {follow_s:g} s of load (window {args.traffic_window_s:g} s)")
    say(
        f"running  {advice.running_pool}: simulated {advice.running_allowable_qps:.1f}, "
        f"live {before.allowable_qps:.1f} q/s ({out['live_over_sim_before']:.2f} of simulated)"
    )
    say(
        f"proposed {advice.proposed_pool}: simulated {advice.proposed_allowable_qps:.1f}, "
        f"live {after.allowable_qps:.1f} q/s ({out['live_over_sim_after']:.2f} of simulated)"
    )
    say(
        f"gain: predicted {advice.gain:.3f}x, measured {live_gain:.3f}x "
        f"(measured / predicted {out['measured_over_predicted']:.3f})"
    )
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget-per-hr", type=float, default=1.0)
    parser.add_argument("--mix-before", default="production")
    parser.add_argument("--mix-after", default="fixed:200")
    parser.add_argument("--rate-before", type=float, default=100.0, help="q/s of the first mix")
    parser.add_argument(
        "--rate-after",
        type=float,
        default=0.0,
        help="q/s of the new mix while the view follows (default: 0.6 x the running pool's "
        "simulated allowable throughput on it)",
    )
    parser.add_argument("--traffic-window-s", type=float, default=5.0)
    parser.add_argument("--precision", type=float, default=0.05, help="of the live searches")
    parser.add_argument("--min-queries", type=int, default=1000, help="per live trial")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--json", action="store_true")
    return parser.parse_args()


def main() -> None:
    # SIGTERM unwinds like Ctrl-C, so the router (and its workers) are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
