"""Re-planning from live traffic: what the router observed -> the pool that fits it now.

The router's traffic view (``kairos.client.admin.fetch_traffic``: model, QoS, policy,
running pool, observed rate and batch mix) is the input. ``advise`` plans for the observed mix
(the best pool within a budget, or the cheapest that holds a target rate), simulates the
running pool and the proposal on that mix under the router's policy, and returns both with the
predicted gain, the change in cost (against a target: whether the running pool is over- or
under-provisioned) and the ``kairos scale`` command that would apply the proposal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kairos import allocator
from kairos.allocator.pools import COST_EPS
from kairos.allocator.target import cheapest_for_rate
from kairos.catalog import Pool
from kairos.errors import ConfigError
from kairos.scenario import Scenario
from kairos.sim.capacity import CapacityJob, Measurement, Measurer
from kairos.workload import BatchMix

# Queries per simulated trial of the advice (fewer than a plan's: advice is asked for often).
ADVISE_QUERIES = 2000
# Pools searched in full before the rest are screened against the best of them (plan's screen).
ADVISE_SCREEN = 1


def observed_mix(view: dict[str, Any], url: str = "the router") -> BatchMix:
    mix = view.get("mix")
    if not mix:
        raise ConfigError(
            f"{url} has observed no queries in its last {view.get('window_s', '?')} s.",
            "send traffic first (the mix is measured over the router's --traffic-window-s).",
        )
    return BatchMix(
        "observed", np.asarray(mix["batch_size"], dtype=np.int64), np.asarray(mix["weight"])
    )


def observed_scenario(
    view: dict[str, Any], profiles_path: str | None = None, prices_path: str | None = None
) -> Scenario:
    """The router's model and QoS with the observed mix (and the given data, if any)."""
    return Scenario.from_files(
        str(view["model"]),
        qos_ms=float(view["qos_ms"]),
        profiles_path=profiles_path,
        prices_path=prices_path,
        mix=observed_mix(view),
    )


@dataclass(frozen=True)
class Advice:
    """The running pool against the proposal, both simulated on the observed mix under the
    router's policy. With ``budget_per_hr`` the proposal is the best pool within it; with
    ``target_qps`` the cheapest pool that holds that rate, and ``running_holds_target`` says
    whether the running pool holds it (one trial at the rate, the same test)."""

    rate_qps: float
    mean_batch: float
    running_pool: Pool
    running_cost_per_hr: float
    running_allowable_qps: float
    proposed_pool: Pool
    proposed_cost_per_hr: float
    proposed_allowable_qps: float
    scale_command: str
    budget_per_hr: float | None = None
    target_qps: float | None = None
    running_holds_target: bool | None = None

    @property
    def gain(self) -> float:
        """Proposed / running allowable throughput on the observed mix."""
        run = self.running_allowable_qps
        return self.proposed_allowable_qps / run if run > 0 else float("inf")

    @property
    def changed(self) -> bool:
        return self.proposed_pool != self.running_pool

    @property
    def cost_change_per_hr(self) -> float:
        """What applying the proposal changes the hourly bill by (negative: a saving)."""
        return self.proposed_cost_per_hr - self.running_cost_per_hr

    @property
    def provisioning(self) -> str | None:
        """Against ``target_qps``: ``under`` (the running pool misses it), ``over`` (it holds
        it, and a cheaper pool does too) or ``right`` (nothing cheaper holds it); None with a
        budget."""
        if self.target_qps is None:
            return None
        if not self.running_holds_target:
            return "under"
        return "over" if self.cost_change_per_hr < -COST_EPS else "right"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "observed_rate_qps": self.rate_qps,
            "observed_mean_batch": self.mean_batch,
            "running_pool": str(self.running_pool),
            "running_cost_per_hr": self.running_cost_per_hr,
            "running_allowable_qps": self.running_allowable_qps,
            "proposed_pool": str(self.proposed_pool),
            "proposed_cost_per_hr": self.proposed_cost_per_hr,
            "proposed_allowable_qps": self.proposed_allowable_qps,
            "gain": self.gain,
            "cost_change_per_hr": self.cost_change_per_hr,
            "changed": self.changed,
            "scale_command": self.scale_command,
        }
        if self.target_qps is not None:
            out |= {
                "target_qps": self.target_qps,
                "running_holds_target": self.running_holds_target,
                "provisioning": self.provisioning,
            }
        else:
            out["budget_per_hr"] = self.budget_per_hr
        return out


def advise(
    view: dict[str, Any],
    scenario: Scenario,
    url: str,
    *,
    budget_per_hr: float | None = None,
    target_qps: float | None = None,
    queries: int = ADVISE_QUERIES,
    seed: int = 0,
) -> Advice:
    """The best pool within ``budget_per_hr`` (or the cheapest that holds ``target_qps``) for
    the observed traffic, against the running one, both simulated on the observed mix under
    the router's policy."""
    if (budget_per_hr is None) == (target_qps is None):
        raise ConfigError(
            "advice needs exactly one of --budget-per-hr and --target-qps.",
            "pass --budget-per-hr B (the best pool for B $/h) or --target-qps R (the cheapest "
            "pool that holds R q/s).",
        )
    policy = str(view["policy"])
    running = Pool.parse(str(view["pool"]))
    measurement = Measurement(queries=queries, seed=seed)
    measurer = Measurer()
    (run_res,) = measurer.run([CapacityJob(scenario, running, policy, measurement)])
    run_qps = run_res.allowable_qps
    holds: bool | None = None
    if target_qps is not None:
        found = cheapest_for_rate(
            scenario, target_qps, policy=policy, measurement=measurement, measurer=measurer
        )
        proposed, proposed_qps = found.pool, float(found.allowable_qps or 0.0)
        job = CapacityJob(scenario, running, policy, measurement, screen_qps=target_qps)
        holds = measurer.run([job])[0].allowable_qps >= target_qps
        if holds:  # as for the proposal: it held the rate, so it reads at least the rate
            run_qps = max(run_qps, target_qps)
    else:
        assert budget_per_hr is not None
        plan = allocator.plan(
            scenario,
            budget_per_hr,
            verify_top=allocator.PLAN_DEFAULTS.verify_top,
            policy=policy,
            measurement=measurement,
            measurer=measurer,
            # Advice reports only the pick, which screening leaves as it is (a pool that fails
            # a trial at the best rate found so far cannot beat it). dien and rm2 at batch 40
            # and 700, 2.5 $/h, 500-query trials: same picks and figures, 0.27-0.31x the CPU
            # at batch 40, about the same at 700.
            screen=ADVISE_SCREEN,
        )
        proposed, proposed_qps = plan.pool, float(plan.allowable_qps or 0.0)
    if proposed == running:
        proposed_qps = run_qps
    return Advice(
        rate_qps=float(view.get("rate_qps") or 0.0),
        mean_batch=scenario.mix.mean,
        running_pool=running,
        running_cost_per_hr=running.cost_per_hr(scenario.prices),
        running_allowable_qps=run_qps,
        proposed_pool=proposed,
        proposed_cost_per_hr=proposed.cost_per_hr(scenario.prices),
        proposed_allowable_qps=proposed_qps,
        scale_command=f"kairos scale --url {url} --pool {proposed}",
        budget_per_hr=budget_per_hr,
        target_qps=target_qps,
        running_holds_target=holds,
    )
