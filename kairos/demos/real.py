"""The whole loop on real compute: profile -> plan -> serve -> live capacity, on one machine.

1. ``kairos profile`` measures the model on each local instance type (a child process per
   type, confined to its CPU share on the worker core), into one profiles CSV and one
   prices CSV (the local types' notional prices).
2. ``kairos plan`` (the library call) picks the pool under the budget from those profiles;
   the QoS target is derived from them (``qos_factor`` x the fastest type's p99 service time
   at the mix's largest batch), so the small type cannot serve the largest batches in time
   and where each query goes matters.
3. For each policy, ``kairos serve --mode model`` runs the planned pool (router on core 0,
   workers confined on the worker core) and the live allowable throughput is searched the
   way ``kairos loadgen --find-capacity`` does, starting from the simulator's prediction for
   the same profiles; the simulator's figure is printed beside it.

``kairos demo --real`` and ``benchmarks/bench_models.py`` run it; the test suite runs a
short version (tests/demos/test_real_loop.py).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from kairos.aio import run_event_loop
from kairos.catalog import Pool, load_prices
from kairos.client.launch import running_router
from kairos.client.loadgen import CapacityReport, LoadReport, LoadSpec, find_capacity
from kairos.errors import ConfigError
from kairos.profiles import load_profiles
from kairos.scenario import QOS_QUANTILE, Scenario
from kairos.serving.worker import cpushare
from kairos.sim.capacity import allowable_throughput
from kairos.text import table
from kairos.workload import parse_mix

Echo = Callable[[str], None]
MAX_CLIENT_BODY_BYTES = 1 << 30  # what the load generator may hold in request bodies


@dataclass(frozen=True)
class RealLoopSettings:
    """Every choice of the loop, declared once (``kairos demo --real`` reads these)."""

    model: str = "dien"
    types: tuple[str, ...] = ("local.half", "local.quarter")
    batch_sizes: tuple[int, ...] = (10, 100, 200, 400, 600, 800, 1000)
    runs: int = 12
    warmup: int = 2
    batch_mix: str = "production"
    qos_factor: float = 1.5
    budget_per_hr: float = 0.10  # one local.full's price: the pool fits on one worker core
    policies: tuple[str, ...] = ("kairos", "fcfs")
    # Each policy is served live once per entry: False one query per worker at a time, True
    # with ``kairos serve --pipeline`` (one query waiting at the worker).
    pipeline: tuple[bool, ...] = (False,)
    precision: float = 0.05  # live search: stop when hi / lo - 1 <= this
    search_step: float = 1.25  # live search: rate factor while bracketing from the guess
    max_steps: int = 10  # live search: bracketing steps before giving up
    min_queries: int = 1000  # per live trial (the first 10% are warm-up)
    sim_queries: int = 5000
    pin_client: bool = True  # move this process (the load generator) to the router's core
    seed: int = 0


# The demo trades precision for time (~8 minutes for dien here); the benchmark uses the above.
DEMO_SETTINGS = RealLoopSettings(precision=0.1, min_queries=500)


def policy_label(policy: str, pipeline: bool) -> str:
    """How a policy served live is named: ``kairos``, or ``kairos +pipeline`` with
    ``kairos serve --pipeline``."""
    return f"{policy} +pipeline" if pipeline else policy


@dataclass(frozen=True)
class PolicyResult:
    policy: str
    simulated_qps: float
    live: CapacityReport
    pipeline: bool = False

    @property
    def label(self) -> str:
        return policy_label(self.policy, self.pipeline)

    @property
    def ratio(self) -> float:
        return self.live.allowable_qps / self.simulated_qps if self.simulated_qps else math.nan


@dataclass(frozen=True)
class RealLoopResult:
    model: str
    qos_ms: float
    pool: Pool
    cost_per_hr: float
    profiles_path: Path
    prices_path: Path
    mean_ms: dict[str, dict[int, float]]  # type -> batch -> mean service time
    policies: list[PolicyResult] = field(default_factory=list)


def cores_for(settings: RealLoopSettings) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(router and client cores, worker cores): the first core, and the last."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    if len(allowed) < 2:
        raise ConfigError(
            "the real loop needs two cores (router and load generator on one, workers on the "
            f"other); this process may use {len(allowed)}.",
            "run it on a machine (or with an affinity) with at least two cores.",
        )
    return (allowed[0],), (allowed[-1],)


def profile_types(
    settings: RealLoopSettings,
    out_dir: Path,
    cores: tuple[tuple[int, ...], tuple[int, ...]],
    echo: Echo,
) -> tuple[Path, Path]:
    """Run ``kairos profile`` once per type: its worker confined on the worker core, the
    measuring client on the router's core (where the router will be)."""
    client_cores, worker_cores = cores
    profiles, prices = out_dir / "profiles.csv", out_dir / "prices.csv"
    for path in (profiles, prices):
        path.unlink(missing_ok=True)
    for t in settings.types:
        cpushare.local_type(t)
        echo(f"[1/3] profiling {settings.model} on {t} ...")
        cmd = [
            sys.executable,
            "-m",
            "kairos",
            "profile",
            "--model",
            settings.model,
            "--instance-type",
            t,
            "--cpus",
            ",".join(map(str, worker_cores)),
            "--batch-sizes",
            ",".join(map(str, settings.batch_sizes)),
            "--runs",
            str(settings.runs),
            "--warmup",
            str(settings.warmup),
            "--seed",
            str(settings.seed),
            "--out",
            str(profiles),
            "--prices-out",
            str(prices),
        ]
        done = subprocess.run(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: os.sched_setaffinity(0, client_cores),
        )
        for line in done.stderr.splitlines():
            echo(f"      {line}")
        if done.returncode != 0:
            raise ConfigError(
                f"profiling {settings.model} on {t} failed (exit status {done.returncode}).",
                "see the lines above; run the same 'kairos profile' command by hand.",
            )
    return profiles, prices


def loop_scenario(settings: RealLoopSettings, profiles: Path, prices: Path) -> Scenario:
    """The scenario the plan is made for, with the QoS target derived from the profiles."""
    mix = parse_mix(settings.batch_mix)
    measured = load_profiles(profiles)
    model = measured.model(settings.model)
    top = float(mix.support.max())
    fastest_ms = min(float(model.get(t).quantile_ms(top, QOS_QUANTILE)) for t in settings.types)
    return Scenario.build(
        settings.model,
        qos_ms=settings.qos_factor * fastest_ms,
        profiles=measured,
        prices=load_prices(prices),
        mix=mix,
    )


def plan_pool(scenario: Scenario, settings: RealLoopSettings, worker_cores: int) -> Pool:
    from kairos.allocator import plan

    pool = plan(scenario, settings.budget_per_hr).pool
    share = sum(n * cpushare.local_type(t).cpu_share for t, n in pool.counts)
    if share > worker_cores + 1e-9:
        raise ConfigError(
            f"the planned pool {pool} needs {share:g} cores of CPU time; the workers have "
            f"{worker_cores} core(s).",
            "lower the budget so the pool fits the worker cores.",
        )
    return pool


def check_client_memory(scenario: Scenario) -> None:
    """The load generator keeps one request body per batch size of the mix: bound it."""
    from kairos.models import load_model

    runner = load_model(scenario.model)
    per_sample = sum(
        math.prod(d for d in s["shape"][1:] if d > 0) * 4 for s in runner.inputs
    )  # every built-in input is 4 bytes an element
    need = 2 * per_sample * int(scenario.mix.support.sum())
    if need > MAX_CLIENT_BODY_BYTES:
        raise ConfigError(
            f"{scenario.model}'s requests take {per_sample:,} bytes a sample; one body per batch "
            f"size of the mix would hold {need / 1e9:.1f} GB in the load generator.",
            "pick another model for the live loop, or a mix with fewer batch sizes.",
        )


def live_capacity(
    scenario: Scenario,
    pool: Pool,
    policy: str,
    guess_qps: float,
    paths: tuple[Path, Path],
    cores: tuple[tuple[int, ...], tuple[int, ...]],
    settings: RealLoopSettings,
    echo: Echo,
    pipeline: bool = False,
) -> CapacityReport:
    router_cores, worker_cores = cores
    args = [
        "--model",
        scenario.model,
        "--mode",
        "model",
        "--pool",
        str(pool),
        "--policy",
        policy,
        "--qos-ms",
        repr(scenario.qos_ms),
        "--batch-mix",
        settings.batch_mix,
        "--profiles",
        str(paths[0]),
        "--prices",
        str(paths[1]),
        "--seed",
        str(settings.seed),
        "--router-cpus",
        ",".join(map(str, router_cores)),
        "--worker-cpus",
        ",".join(map(str, worker_cores)),
        *(["--pipeline"] if pipeline else []),
    ]
    label = policy_label(policy, pipeline)

    def progress(report: LoadReport) -> None:
        echo(
            f"      {label}: {report.rate_qps:7.1f} q/s -> {report.qos_met_fraction:.2%} within "
            f"QoS, p99 {report.p99_ms:.1f} ms, {report.errors} errors"
        )

    with running_router(args, ready_timeout_s=120) as router:
        # duration_s 0: each trial's length is min_queries' (at most MAX_TRIAL_S), no floor.
        spec = LoadSpec(
            router.url, scenario.model, guess_qps, 0.0, scenario.mix, seed=settings.seed
        )
        search = find_capacity(
            spec,
            precision=settings.precision,
            guess_qps=guess_qps,
            step=settings.search_step,
            min_queries=settings.min_queries,
            max_steps=settings.max_steps,
            progress=progress,
        )
        return run_event_loop(search)


def run_real_loop(
    settings: RealLoopSettings, out_dir: str | Path, echo: Echo = print
) -> RealLoopResult:
    """Profile, plan, serve and measure; see the module docstring."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cores = cores_for(settings)
    paths = profile_types(settings, out, cores, echo)
    scenario = loop_scenario(settings, *paths)
    check_client_memory(scenario)
    pool = plan_pool(scenario, settings, len(cores[1]))
    cost = pool.cost_per_hr(scenario.prices)
    echo(
        f"[2/3] plan: {pool} (${cost:.3f}/h of ${settings.budget_per_hr:g}/h), QoS p99 "
        f"{scenario.qos_ms:.1f} ms (= {settings.qos_factor:g} x the fastest type's p99 at "
        f"batch {int(scenario.mix.support.max())})"
    )
    means = {
        t: {b: float(scenario.profiles.get(t).mean_ms(float(b))) for b in settings.batch_sizes}
        for t in settings.types
    }
    result = RealLoopResult(settings.model, scenario.qos_ms, pool, cost, *paths, means)
    if settings.pin_client:
        os.sched_setaffinity(0, cores[0])  # the load generator shares the router's core
    for policy in settings.policies:
        sim = allowable_throughput(scenario, pool, policy, queries=settings.sim_queries)
        echo(
            f"[3/3] {policy}: simulated allowable {sim.allowable_qps:.1f} q/s; serving the "
            "pool for real and searching its live allowable throughput ..."
        )
        if sim.allowable_qps <= 0:  # no rate meets QoS even in the simulator: nothing to find
            echo(f"      {policy}: no rate meets QoS ({sim.reason}); live search skipped")
            result.policies.append(PolicyResult(policy, 0.0, CapacityReport(0.0, 0.0, ())))
            continue
        for way in settings.pipeline:
            live = live_capacity(
                scenario, pool, policy, sim.allowable_qps, paths, cores, settings, echo, way
            )
            result.policies.append(PolicyResult(policy, sim.allowable_qps, live, way))
    return result


def run_real_demo(
    model: str | None, budget_per_hr: float | None, out_dir: str, echo: Echo, err: Echo
) -> RealLoopResult:
    """``kairos demo --real``: the loop with its defaults (a model or budget given on the
    command line replaces the default), progress on ``err``, the summary on ``echo``."""
    settings = DEMO_SETTINGS
    if model is not None:
        settings = replace(settings, model=model)
    if budget_per_hr is not None:
        settings = replace(settings, budget_per_hr=budget_per_hr)
    err(
        f"kairos demo --real: {settings.model} on {', '.join(settings.types)} (this machine's "
        f"cores, confined), budget ${settings.budget_per_hr:g}/h; files in {out_dir}/"
    )
    result = run_real_loop(settings, out_dir, err)
    echo(format_summary(result))
    return result


def format_summary(result: RealLoopResult, batches: Sequence[int] = (10, 100, 1000)) -> str:

    shown = [b for b in batches if all(b in m for m in result.mean_ms.values())]
    prof_rows = [[t, *(f"{m[b]:.1f}" for b in shown)] for t, m in result.mean_ms.items()]
    prof = table(prof_rows, ["type", *(f"mean_ms@{b}" for b in shown)])
    rows = []
    for p in result.policies:
        at = _at_allowable(p.live)
        rows.append(
            [
                p.label,
                f"{p.simulated_qps:.1f}",
                f"{p.live.allowable_qps:.1f}",
                f"{p.ratio:.2f}",
                at,
            ]
        )
    live = table(rows, ["policy", "simulated_qps", "live_qps", "live/sim", "at live rate"])
    return (
        f"{result.model}: measured profiles ({result.profiles_path})\n{prof}\n\n"
        f"pool {result.pool} (${result.cost_per_hr:.3f}/h), QoS p99 {result.qos_ms:.1f} ms\n"
        f"{live}\n"
        "simulated_qps: the simulator's allowable throughput (99% within QoS) from the "
        "measured profiles; live_qps: the same searched on the served pool; at live rate: "
        "share within QoS and p99 of the trial at live_qps."
    )


def _at_allowable(report: CapacityReport) -> str:
    trials = [t for t in report.trials if t.passed]
    if not trials:
        return "-"
    best = max(trials, key=lambda t: t.rate_qps)
    return f"{best.qos_met_fraction:.1%}, p99 {best.p99_ms:.1f} ms"


def quick_settings(model: str = "ncf") -> RealLoopSettings:
    """A short loop for tests: few batch sizes and runs, small trials, coarse search."""
    return replace(
        RealLoopSettings(model=model),
        batch_sizes=(10, 500, 1000),
        runs=3,
        warmup=1,
        policies=("kairos",),
        precision=0.3,
        search_step=2.0,
        max_steps=2,
        # 100 queries a trial (90 judged): the test reads no figure, only that trials ran,
        # answered every query and bracketed a rate; on a busy host every trial fails and the
        # rate halves twice, so the last trial is the longest (100 / a quarter of the guess).
        min_queries=100,
        sim_queries=1000,
        pin_client=False,
    )
