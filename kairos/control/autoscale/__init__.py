"""Autoscalers: ``kairos`` (heterogeneous, planned on the observed mix) and the baselines a user
would pick instead, in one registry. Each entry builds an ``Autoscaler`` (kairos.sim.autoscale)
for one scenario; baselines that judge with hindsight get the whole trace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kairos.registry import Registry
from kairos.scenario import Scenario
from kairos.sim.autoscale import Autoscaler, CloudSettings
from kairos.workload import QueryStream


@dataclass(frozen=True)
class AutoscaleContext:
    """What every autoscaler is built from. ``trace`` is the whole trace, for the baselines
    that plan with hindsight (static pools, the oracle); live, it is None."""

    scenario: Scenario
    policy: str
    cloud: CloudSettings
    budget_per_hr: float | None
    trace: QueryStream | None


AutoscalerFactory = Callable[[AutoscaleContext], Autoscaler]

AUTOSCALERS: Registry[AutoscalerFactory] = Registry(
    "autoscaler",
    "pass --autoscaler kairos, or a baseline: static-peak, static-mean, static-best, ray-serve, "
    "skyserve, oracle.",
)
