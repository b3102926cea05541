"""The live demo: one small local pool, the same Poisson load under ``kairos`` and ``fcfs``.

Each policy gets a fresh router with replay workers (real time by default) and the same
seeded arrivals; the rate sits between the two policies' simulated allowable throughputs,
so the difference the paper reports shows up on real processes and sockets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kairos.catalog import Pool
from kairos.distributor import policy_names
from kairos.runtime.aio import run_event_loop
from kairos.runtime.launch import running_router
from kairos.runtime.loadgen import LoadReport, LoadSpec, run_load
from kairos.scenario import Scenario
from kairos.sim.capacity import allowable_throughput

DEMO_POOL = "g4dn.xlarge=1,r5n.large=3"


@dataclass(frozen=True)
class DemoRow:
    policy: str
    simulated_allowable_qps: float
    report: LoadReport


def demo_rate_qps(scenario: Scenario, pool: Pool, policies: Sequence[str]) -> dict[str, float]:
    """Simulated allowable throughput per policy (short searches: a demo, not a benchmark)."""
    return {
        p: allowable_throughput(scenario, pool, p, queries=2000).allowable_qps for p in policies
    }


def run_live_demo(
    model: str = "dien",
    pool_text: str = DEMO_POOL,
    *,
    rate_qps: float | None = None,
    duration_s: float = 15.0,
    time_scale: float = 1.0,
    policies: Sequence[str] = ("kairos", "fcfs"),
    seed: int = 0,
    echo: Callable[[str], None] = print,
) -> list[DemoRow]:
    """Serve ``pool_text`` locally under each policy in turn and print them side by side."""
    scenario = Scenario.build(model)
    pool = Pool.parse(pool_text)
    known = set(policy_names())
    chosen = [p for p in policies if p in known]
    simulated = demo_rate_qps(scenario, pool, chosen)
    if rate_qps is None:
        values = sorted(v for v in simulated.values() if v > 0) or [10.0]
        rate_qps = math.sqrt(values[0] * values[-1]) if len(values) > 1 else 0.8 * values[0]
    echo(f"live demo: model {model}, QoS p99 {scenario.qos_ms:g} ms, pool {pool} "
         f"(${pool.cost_per_hr(scenario.prices):.3f}/h), {rate_qps:.1f} qps for "
         f"{duration_s:g} s per policy, replay workers at time scale {time_scale:g}")  # fmt: skip
    rows = []
    for policy in chosen:
        args = ["--model", model, "--pool", str(pool), "--policy", policy,
                "--time-scale", repr(time_scale), "--seed", str(seed)]  # fmt: skip
        with running_router(args) as router:
            spec = LoadSpec(router.url, model, rate_qps, duration_s, scenario.mix, seed=seed)
            report = run_event_loop(run_load(spec))
        rows.append(DemoRow(policy, simulated[policy], report))
        echo(f"  {policy}: {report.completed}/{report.sent} answered, p99 {report.p99_ms:.1f} ms")
    echo(format_demo(rows))
    return rows


def format_demo(rows: Sequence[DemoRow]) -> str:
    from kairos.cli.common import table

    header = ["policy", "sim_allowable_qps", "sent", "completed", "rejected", "errors",
              "throughput_qps", "p50_ms", "p99_ms", "within_qos"]  # fmt: skip
    body = [
        [r.policy, f"{r.simulated_allowable_qps:.1f}", str(r.report.sent),
         str(r.report.completed), str(r.report.rejected), str(r.report.errors),
         f"{r.report.throughput_qps:.1f}", f"{r.report.p50_ms:.1f}", f"{r.report.p99_ms:.1f}",
         f"{r.report.qos_met_fraction:.2%}"]
        for r in rows
    ]  # fmt: skip
    return table(body, header)
