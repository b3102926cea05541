"""The live demo: one small local pool, the same Poisson load under ``kairos`` and ``fcfs``.

Each policy gets a fresh router with replay workers (real time by default) and the same
seeded arrivals. The rate is set just above the weaker policy's simulated allowable
throughput and below the stronger one's, so one misses the QoS target where the other holds
it: the difference the paper reports, on real processes and sockets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kairos.aio import run_event_loop
from kairos.catalog import Pool
from kairos.client.launch import running_router
from kairos.client.loadgen import LoadReport, LoadSpec, run_load
from kairos.distributor import policy_class
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


def demo_rate(simulated: dict[str, float]) -> float:
    """A rate where the policies differ: above the weakest's allowable throughput (so it
    misses QoS) and below the strongest's (so that one holds it)."""
    values = sorted(v for v in simulated.values() if v > 0) or [10.0]
    low, high = values[0], values[-1]
    return min(1.3 * low, 0.85 * high) if high > 1.3 * low else 0.9 * low


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
    """Serve ``pool_text`` locally under each policy in turn, same load; return the rows."""
    scenario = Scenario.build(model)
    pool = Pool.parse(pool_text)
    chosen = [policy_class(p).name for p in policies]
    simulated = demo_rate_qps(scenario, pool, chosen)
    rate = demo_rate(simulated) if rate_qps is None else rate_qps
    echo(
        f"live demo: model {model}, QoS p99 {scenario.qos_ms:g} ms, pool {pool} "
        f"(${pool.cost_per_hr(scenario.prices):.3f}/h), {rate:.1f} qps for "
        f"{duration_s:g} s per policy, replay workers at time scale {time_scale:g}; "
        "simulated allowable throughput: "
        + ", ".join(f"{p} {v:.1f} qps" for p, v in simulated.items())
    )
    rows = []
    for policy in chosen:
        args = [
            "--model",
            model,
            "--pool",
            str(pool),
            "--policy",
            policy,
            "--time-scale",
            repr(time_scale),
            "--seed",
            str(seed),
        ]
        with running_router(args) as router:
            spec = LoadSpec(router.url, model, rate, duration_s, scenario.mix, seed=seed)
            report = run_event_loop(run_load(spec))
        rows.append(DemoRow(policy, simulated[policy], report))
        echo(
            f"  {policy}: {report.completed}/{report.sent} answered, "
            f"{report.qos_met_fraction:.1%} within QoS, p99 {report.p99_ms:.1f} ms"
        )
    return rows
