"""Homogeneous baselines: replicas of one instance type, as Ray Serve and SkyServe scale them.

Both rent the best single type by allowable throughput per dollar (one instance of each type
measured on the mix: the trace's when there is one, the scenario's live) and change only how
many replicas run:

- ``ray-serve``: Ray Serve's default queue-length policy. Desired replicas are the ongoing
  requests (queued plus in flight) averaged over ``look_back_s``, divided by
  ``target_ongoing_requests``, rounded up; a change is applied once it has been wanted
  continuously for ``upscale_delay_s`` (up) or ``downscale_delay_s`` (down). Defaults are Ray
  Serve's: 2 ongoing requests per replica, 30 s look-back, 30 s up, 600 s down.
- ``skyserve``: SkyServe's request-rate policy. Desired replicas are the rate over the last
  ``qps_window_s`` divided by ``target_qps_per_replica`` (here the type's allowable
  throughput), rounded up, with SkyServe's default delays: 300 s up, 1200 s down
  (``AUTOSCALER_DEFAULT_UPSCALE_DELAY_SECONDS`` / ``..._DOWNSCALE_...`` and a 60 s QPS window
  in SkyPilot's ``sky/serve/constants.py``). The observation's window nearest 60 s is read.

Both start at once when nothing is rented (SkyServe scales up immediately from zero; Ray
Serve starts its minimum replicas) and never rent more replicas than the budget buys, nor
more than ``max_replicas`` (``replica_cap``: twice what the trace's peak minute needs).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace
from typing import Protocol

from kairos.allocator.pools import catalog_types
from kairos.catalog import Pool
from kairos.control.autoscale import AUTOSCALERS, AutoscaleContext
from kairos.control.autoscale.ladder import LadderSettings, minute_rates_qps, trace_mix
from kairos.errors import ConfigError, InfeasibleError
from kairos.limits import MAX_POOL_INSTANCES
from kairos.scenario import Scenario
from kairos.sim.autoscale import Observation
from kairos.sim.capacity import Measurement, allowable_throughput
from kairos.workload import check_batches_within

# max_replicas, as a multiple of the replicas the trace's peak minute needs (``replica_cap``).
MAX_OVER_PEAK = 2.0


@dataclass(frozen=True)
class BestType:
    instance_type: str
    allowable_qps: float  # of one instance
    price_per_hr: float


def best_single_type(scenario: Scenario, policy: str, measurement: Measurement) -> BestType:
    """The type whose single instance holds the most q/s per dollar (ties: the name)."""
    best: BestType | None = None
    for t in sorted(catalog_types(scenario)):
        res = allowable_throughput(
            scenario,
            Pool.of({t: 1}),
            policy,
            queries=measurement.queries,
            precision=measurement.precision,
            seed=measurement.seed,
        )
        price = scenario.prices.price_per_hr(t)
        if res.allowable_qps > 0 and (
            best is None or res.allowable_qps / price > best.allowable_qps / best.price_per_hr
        ):
            best = BestType(t, res.allowable_qps, price)
    if best is None:
        raise InfeasibleError(
            f"no single instance of any type holds {scenario.model!r}'s batch mix within QoS "
            f"{scenario.qos_ms:g} ms, so a homogeneous autoscaler has nothing to replicate.",
            "raise --qos-ms, or compare with the kairos autoscaler only.",
        )
    return best


class DelayedCount:
    """Applies a new replica count once it has been wanted continuously for the delay of its
    direction (the decision counters of Ray Serve and SkyServe, counted in seconds)."""

    def __init__(self, upscale_delay_s: float, downscale_delay_s: float) -> None:
        self.upscale_delay_s = upscale_delay_s
        self.downscale_delay_s = downscale_delay_s
        self._direction = 0
        self._since_s = 0.0

    def update(self, now_s: float, current: int, desired: int) -> int | None:
        direction = (desired > current) - (desired < current)
        if direction == 0:
            self._direction = 0
            return None
        if direction != self._direction:
            self._direction, self._since_s = direction, now_s
        delay = self.upscale_delay_s if direction > 0 else self.downscale_delay_s
        if now_s - self._since_s >= delay:
            self._direction = 0
            return desired
        return None


class ReplicaSettings(Protocol):
    """What every replica autoscaler's settings give its base: the delays and the floor."""

    @property
    def upscale_delay_s(self) -> float: ...

    @property
    def downscale_delay_s(self) -> float: ...

    @property
    def min_replicas(self) -> int: ...


class ReplicaAutoscaler:
    """Replicas of one type; subclasses say how many are desired from an observation."""

    name = "replicas"

    def __init__(
        self,
        best: BestType,
        budget_per_hr: float | None,
        settings: ReplicaSettings,
        max_replicas: int = MAX_POOL_INSTANCES,
    ) -> None:
        self.best = best
        min_replicas = self.min_replicas = settings.min_replicas
        affordable = (
            max_replicas if budget_per_hr is None else math.floor(budget_per_hr / best.price_per_hr)
        )
        self.max_replicas = min(max_replicas, affordable)
        if self.max_replicas < min_replicas:
            raise ConfigError(
                f"the budget {budget_per_hr:g} $/h does not buy {min_replicas} "
                f"{best.instance_type} ({best.price_per_hr:g} $/h each).",
                "raise --budget-per-hr.",
            )
        self.delay = DelayedCount(settings.upscale_delay_s, settings.downscale_delay_s)

    def desired(self, obs: Observation) -> int:
        raise NotImplementedError

    def decide(self, obs: Observation) -> Pool | None:
        want = self.desired(obs)
        want = int(min(max(want, self.min_replicas), self.max_replicas))
        rented = obs.pool.rented
        t = self.best.instance_type
        if rented.size == 0 or rented.types != (t,):
            # Nothing rented, or other types (a pool given at start): replicas of ours at once.
            self.delay.update(obs.now_s, want, want)
            return Pool.of({t: want})
        n = self.delay.update(obs.now_s, rented.count(t), want)
        return None if n is None else Pool.of({t: n})


@dataclass(frozen=True)
class RayServeSettings:
    """Ray Serve's autoscaling defaults (``AutoscalingConfig``), and ``max_over_peak`` for
    its ``max_replicas`` (see ``replica_cap``)."""

    target_ongoing_requests: float = 2.0
    look_back_s: float = 30.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    min_replicas: int = 1
    max_over_peak: float = MAX_OVER_PEAK


@dataclass(frozen=True)
class SkyServeSettings:
    """SkyServe's autoscaling defaults (``sky/serve/constants.py``); the target rate per
    replica is the chosen type's allowable throughput; ``max_over_peak`` sets its
    ``max_replicas`` (see ``replica_cap``)."""

    qps_window_s: float = 60.0
    upscale_delay_s: float = 300.0
    downscale_delay_s: float = 1200.0
    min_replicas: int = 1
    max_over_peak: float = MAX_OVER_PEAK


class RayServeAutoscaler(ReplicaAutoscaler):
    name = "ray-serve"

    def __init__(
        self,
        best: BestType,
        budget_per_hr: float | None,
        settings: RayServeSettings = RayServeSettings(),
        max_replicas: int = MAX_POOL_INSTANCES,
    ) -> None:
        super().__init__(best, budget_per_hr, settings, max_replicas)
        self.settings = settings
        self._samples: deque[tuple[float, int]] = deque()

    def desired(self, obs: Observation) -> int:
        self._samples.append((obs.now_s, obs.queue_length + obs.in_flight))
        while self._samples[0][0] < obs.now_s - self.settings.look_back_s:
            self._samples.popleft()
        ongoing = sum(n for _, n in self._samples) / len(self._samples)
        return math.ceil(ongoing / self.settings.target_ongoing_requests - 1e-9)


class SkyServeAutoscaler(ReplicaAutoscaler):
    name = "skyserve"

    def __init__(
        self,
        best: BestType,
        budget_per_hr: float | None,
        settings: SkyServeSettings = SkyServeSettings(),
        max_replicas: int = MAX_POOL_INSTANCES,
    ) -> None:
        super().__init__(best, budget_per_hr, settings, max_replicas)
        self.settings = settings
        self.target_qps_per_replica = best.allowable_qps

    def desired(self, obs: Observation) -> int:
        goal = self.settings.qps_window_s
        window = min((obs.short, obs.long), key=lambda w: abs(w.window_s - goal))
        return math.ceil(window.rate_qps / self.target_qps_per_replica - 1e-9)


def _best_for(ctx: AutoscaleContext) -> BestType:
    scenario = ctx.scenario
    if ctx.trace is not None and len(ctx.trace) > 0:
        mix = trace_mix(ctx.trace)
        check_batches_within(
            mix.max_batch, "the trace", scenario.profiles.max_batch, scenario.model
        )
        scenario = replace(scenario, mix=mix)
    return best_single_type(scenario, ctx.policy, LadderSettings().measurement())


def replica_cap(ctx: AutoscaleContext, best: BestType, max_over_peak: float) -> int:
    """``max_replicas``: both systems make a user set it (Ray Serve's default is 1). A user
    would size it from the expected peak, so with a trace it is ``max_over_peak`` times the
    replicas its peak minute needs at the type's allowable rate; live, the pool cap. Without
    a cap, a queue-length policy that fell behind a ramp rents for the backlog, without end."""
    if ctx.trace is None or len(ctx.trace) == 0:
        return MAX_POOL_INSTANCES
    peak_qps = float(minute_rates_qps(ctx.trace).max())
    need = math.ceil(max_over_peak * peak_qps / best.allowable_qps - 1e-9)
    return int(min(MAX_POOL_INSTANCES, max(1, need)))


@AUTOSCALERS.register("ray-serve")
def ray_serve(ctx: AutoscaleContext) -> RayServeAutoscaler:
    best, s = _best_for(ctx), RayServeSettings()
    return RayServeAutoscaler(best, ctx.budget_per_hr, s, replica_cap(ctx, best, s.max_over_peak))


@AUTOSCALERS.register("skyserve")
def skyserve(ctx: AutoscaleContext) -> SkyServeAutoscaler:
    best, s = _best_for(ctx), SkyServeSettings()
    return SkyServeAutoscaler(best, ctx.budget_per_hr, s, replica_cap(ctx, best, s.max_over_peak))
