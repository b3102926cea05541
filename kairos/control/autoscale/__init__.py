"""Autoscalers: ``kairos`` (heterogeneous, planned on the observed mix) and the baselines a user
would pick instead, in one registry. Each entry builds an ``Autoscaler`` (kairos.sim.autoscale)
for one scenario; baselines that judge with hindsight get the whole trace.

Modules: ``controller`` (kairos), ``hindsight`` (static-peak, static-mean, static-best,
oracle), ``replicas`` (ray-serve, skyserve), and ``ladder`` (the cheapest pools by rate they
plan with). Each registers its entries on import; the registry imports them before its first
lookup, so ``AUTOSCALERS.names()`` lists every one. docs/autoscale.md explains the controller.
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


def _discover() -> None:
    # Imported here, not at the top: each module registers itself into AUTOSCALERS below.
    from kairos.control.autoscale import controller, hindsight, replicas  # noqa: F401


AUTOSCALERS: Registry[AutoscalerFactory] = Registry(
    "autoscaler",
    "pass --autoscaler kairos, or a baseline: static-peak, static-mean, static-best, ray-serve, "
    "skyserve, oracle.",
    discover=_discover,
)
