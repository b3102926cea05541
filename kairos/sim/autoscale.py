"""What an autoscaler sees and what it decides: one seam for the simulator and the live router.

Every ``tick_s`` seconds of trace time the driver of a time-varying pool (the simulator's
``kairos.sim.timeline``, or the live control loop beside a router) hands the autoscaler an
``Observation``: the pool as it stands (serving, booting, draining), the queue, and the traffic
seen over a short and a long window. The autoscaler answers with the pool it wants rented from
now on, or ``None`` to keep what it has. Renting and returning instances is the driver's job:
new instances are billed from the moment they are asked for and serve once booted; removed
ones take no new query, finish the one they serve, and are billed until then.

Autoscalers live in ``kairos.control.autoscale`` (a registry: ``kairos`` and the baselines a
user would pick instead). This module only fixes the values that cross the seam, so the
simulator imports no planner.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from kairos.catalog import Pool
from kairos.errors import ConfigError
from kairos.workload import BatchMix


@dataclass(frozen=True)
class TrafficWindow:
    """Traffic over the last ``window_s`` seconds (fewer at the start of a run)."""

    window_s: float
    queries: int
    rate_qps: float
    mix: BatchMix | None  # None until a query has arrived
    # Arrivals in the window's busiest whole second (None where not measured): bursts of a
    # few seconds, which a window's mean rate dilutes, show here.
    peak_qps: float | None = None


@dataclass(frozen=True)
class PoolState:
    """The rented pool at one instant: what serves, what boots, what drains."""

    serving: Pool
    booting: Pool
    draining: int  # instances told to leave that still finish a query

    @property
    def rented(self) -> Pool:
        """Serving plus booting: what the autoscaler asked for and still pays for."""
        counts = dict(self.serving.counts)
        for t, n in self.booting.counts:
            counts[t] = counts.get(t, 0) + n
        return Pool.of(counts)


@dataclass(frozen=True)
class Observation:
    now_s: float
    pool: PoolState
    queue_length: int
    in_flight: int
    short: TrafficWindow
    long: TrafficWindow


class Autoscaler(Protocol):
    """Decides the rented pool every tick; ``None`` keeps the current one."""

    name: str

    def decide(self, obs: Observation) -> Pool | None: ...


@dataclass(frozen=True)
class CloudSettings:
    """How the cloud rents instances: boot delay per type, per-second billing with a minimum.

    A VM of a new type boots in 60-120 s on the big clouds (image pull, start, model load);
    ``boot_s`` gives a type its own delay and ``default_boot_s`` covers the rest. A node that
    already runs (a Ray cluster with spare nodes) joins in seconds: pass a small default.
    Billing is per second while an instance exists, from request to release, with
    ``min_charge_s`` (AWS and GCP bill at least 60 s per VM start).
    """

    default_boot_s: float = 90.0
    boot_s: Mapping[str, float] = field(default_factory=dict)
    min_charge_s: float = 60.0

    def __post_init__(self) -> None:
        for name, value in [("default", self.default_boot_s), *self.boot_s.items()]:
            if not (math.isfinite(value) and 0.0 <= value <= 3600.0):
                raise ConfigError(
                    f"boot delay {value!r} s for {name} is not in [0, 3600].",
                    "give boot delays in seconds, e.g. --boot-s 90 or --boot-s g4dn.xlarge=120.",
                )
        if not (math.isfinite(self.min_charge_s) and 0.0 <= self.min_charge_s <= 3600.0):
            raise ConfigError(
                f"minimum charge {self.min_charge_s!r} s is not in [0, 3600].",
                "give the cloud's minimum billed seconds per instance, e.g. 60.",
            )

    def boot_delay_s(self, instance_type: str) -> float:
        return float(self.boot_s.get(instance_type, self.default_boot_s))

    def charge_s(self, alive_s: float) -> float:
        """Billed seconds of an instance that existed ``alive_s`` seconds."""
        return max(alive_s, self.min_charge_s)
