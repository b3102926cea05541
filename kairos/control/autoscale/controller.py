"""The kairos autoscaler: the cheapest heterogeneous pool for the load ahead, moved to with the
least churn.

Every tick (docs/autoscale.md walks through it):

1. **Forecast** the rate one boot delay ahead: the larger of the short and the long window's
   rate, extended along the trend between them over the boot delay (a rising load arrives
   before new instances do), plus ``noise_sigmas`` standard deviations of a Poisson count
   over ``noise_window_s`` (the rate's own noise), times ``headroom``, plus the queue drained
   over ``backlog_drain_s``; never below ``min_rate_qps``. The base is never below the long
   window's rate plus ``swing_sigmas`` times the swings observed: the standard deviation of
   the short window's rate relative to the long one's over the ticks of ``swing_window_s``
   (real traffic swings 10% or more from minute to minute, well beyond a Poisson count).
   Where the windows carry their busiest second, the forecast is then multiplied by the
   ``burst_quantile`` of the second-scale bursts seen (``burst``).
2. **Plan on the mix observed** over the long window once it holds ``min_mix_queries``
   queries (the scenario's mix until then), on a ladder of cheapest pools by rate that is
   re-derived only when the mix moves (``kairos.control.autoscale.ladder``).
3. **Move with the least churn**: among the known pools that hold the forecast within
   ``churn_margin`` of the cheapest, the one closest to the rented pool. A move up (the rented
   pool does not hold the forecast) happens at once; a move down goes to the cheapest pool
   that holds every forecast of the last ``downscale_delay_s``. A move that swaps types
   (adds some instances, drops others) rents the union of both pools until the new instances
   have booted, then drops the surplus at once: make before break. Never below ``min_pool``;
   never above the budget.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from kairos.allocator.pools import catalog_types
from kairos.catalog import Pool
from kairos.control.autoscale import AUTOSCALERS, AutoscaleContext
from kairos.control.autoscale.ladder import (
    Ladder,
    Ladders,
    LadderSettings,
    canonical,
    choose,
    pool_union,
)
from kairos.errors import ConfigError
from kairos.scenario import Scenario
from kairos.sim.autoscale import CloudSettings, Observation
from kairos.workload import BatchMix


def _check(ok: bool, what: str, fix: str) -> None:
    if not ok:
        raise ConfigError(what, fix)


@dataclass(frozen=True)
class KairosSettings:
    """The kairos autoscaler's settings; each line says what raising it buys and costs.

    - ``headroom``: factor on the forecast (1: no margin beyond the noise term and the
      ladder's rounding up). Higher misses QoS less when the load jumps between ticks, and
      pays that share more all day.
    - ``noise_sigmas``: standard deviations of the Poisson noise added. Higher absorbs
      second-scale bursts; at low rates the noise term dominates and costs most.
    - ``noise_window_s``: the burst length the pool must absorb without queueing past QoS.
      Shorter adds more (a short window's count is noisier relative to its mean).
    - ``trend_weight``: how far a rising trend (short window above the long one) is
      extended over the boot delay; 0 turns it off. Higher is earlier on ramps, and
      overreacts to a burst that does not last.
    - ``swing_sigmas``: standard deviations of the observed minute-scale swings (the short
      window's rate relative to the long one's, over ``swing_window_s``) kept above the long
      window's rate; 0 turns it off. Higher misses QoS less in a swing up, and rents that
      share more whenever the traffic swings.
    - ``swing_window_s``: how far back the swings are measured. Longer is a steadier
      estimate, and follows a change in the traffic's noisiness later.
    - ``burst_quantile``: the share of the bursts seen over ``swing_window_s`` the pool is
      sized for: a burst is a short window's busiest second over the rate around it (the
      windows from one before to one after), as a factor that multiplies the forecast; 0
      turns it off. Higher misses QoS less in second-scale bursts and rents that factor on
      every tick of bursty traffic (traffic without bursts pays nothing for it).
    - ``burst_noise_sigmas``: Poisson standard deviations of a second's count that are the
      rate's own noise, not a burst. Lower reads more noise as bursts and rents for it.
    - ``backlog_drain_s``: a queue left over is planned to drain within this time. Shorter
      recovers from an overload faster and rents more for it.
    - ``min_mix_queries``: queries the long window needs before its mix replaces the
      scenario's. Lower follows a new mix sooner and plans on noisier samples.
    - ``mix_drift_tv``: how far (total variation over power-of-two batch bins) the mix must
      move before a new ladder is planned. Lower plans more often (CPU), higher plans on a
      stale mix.
    - ``churn_margin``: a pool within this share of the cheapest's cost may be kept for being
      closer to the rented one. Higher moves less and pays up to that share more.
    - ``downscale_delay_s``: a move down goes only to a pool that holds every forecast of
      this last stretch of time (Kubernetes' scale-down stabilisation window). Longer rides
      out dips (and the boot delay of coming back), and pays for the surplus meanwhile.
    - ``min_rate_qps``: the forecast's floor; the pool never shrinks below what holds it, so
      the first query after an idle spell is served without a boot.
    - ``min_pool``: instances rented whatever the load (per type), e.g. a reserved node.
    - ``ladder``: how the cheapest pools by rate are planned (``LadderSettings``).
    """

    headroom: float = 1.0
    noise_sigmas: float = 1.0
    noise_window_s: float = 10.0
    trend_weight: float = 1.0
    swing_sigmas: float = 1.5
    swing_window_s: float = 1800.0
    burst_quantile: float = 0.95
    burst_noise_sigmas: float = 3.0
    backlog_drain_s: float = 60.0
    min_mix_queries: int = 500
    mix_drift_tv: float = 0.1
    churn_margin: float = 0.05
    downscale_delay_s: float = 120.0
    min_rate_qps: float = 1.0
    min_pool: Pool | None = None
    ladder: LadderSettings = field(default_factory=LadderSettings)

    def __post_init__(self) -> None:
        _check(
            math.isfinite(self.headroom) and 1.0 <= self.headroom <= 10.0,
            f"headroom {self.headroom!r} is not in [1, 10].",
            "give a factor on the forecast rate such as 1.1.",
        )
        for name in (
            "noise_sigmas",
            "trend_weight",
            "swing_sigmas",
            "burst_noise_sigmas",
            "churn_margin",
            "downscale_delay_s",
        ):
            value = getattr(self, name)
            _check(
                isinstance(value, int | float) and math.isfinite(value) and value >= 0,
                f"{name} {value!r} is not a finite number >= 0.",
                f"give {name} as a number >= 0 (0 turns it off).",
            )
        for name in ("noise_window_s", "swing_window_s", "backlog_drain_s", "min_rate_qps"):
            value = getattr(self, name)
            _check(
                isinstance(value, int | float) and math.isfinite(value) and value > 0,
                f"{name} {value!r} is not a finite number > 0.",
                f"give {name} as a positive number.",
            )
        _check(
            isinstance(self.min_mix_queries, int) and self.min_mix_queries >= 1,
            f"min_mix_queries {self.min_mix_queries!r} is not a whole number >= 1.",
            "give the queries needed before the observed mix is trusted, e.g. 500.",
        )
        _check(
            isinstance(self.burst_quantile, int | float) and 0.0 <= self.burst_quantile <= 1.0,
            f"burst_quantile {self.burst_quantile!r} is not in [0, 1].",
            "give the share of bursts the pool is sized for, e.g. 0.95 (0 turns it off).",
        )
        _check(
            0.0 < self.mix_drift_tv <= 1.0,
            f"mix_drift_tv {self.mix_drift_tv!r} is not in (0, 1].",
            "give a total variation such as 0.1.",
        )


class KairosAutoscaler:
    """The kairos controller (see the module docstring). ``ladders`` may be given to share
    planned ladders between runs, or replaced by a stand-in in tests."""

    name = "kairos"

    def __init__(
        self,
        scenario: Scenario,
        policy: str,
        cloud: CloudSettings,
        budget_per_hr: float | None = None,
        settings: KairosSettings = KairosSettings(),
        ladders: Ladders | None = None,
    ) -> None:
        self.scenario = scenario
        self.settings = settings
        self.budget_per_hr = budget_per_hr
        self.ladders = ladders or Ladders(scenario, policy, settings.ladder, settings.mix_drift_tv)
        # New instances of any catalog type may be asked for: plan for the slowest boot.
        self.horizon_s = max(cloud.boot_delay_s(t) for t in catalog_types(scenario))
        floor = settings.min_pool
        if floor is not None and budget_per_hr is not None:
            cost = floor.cost_per_hr(scenario.prices)
            _check(
                cost <= budget_per_hr,
                f"the minimum pool {floor} costs {cost:.4g} $/h, above the budget "
                f"{budget_per_hr:g} $/h.",
                "raise --budget-per-hr or shrink the minimum pool.",
            )
        # (time, forecast) of the observations since downscale_delay_s ago, and the one
        # before them (so the first entry tells whether that much has been seen).
        self._recent: deque[tuple[float, float]] = deque()
        # A move that swaps types rents the union first; this is the pool it then shrinks to.
        self._pending: Pool | None = None
        # (time, short rate / long rate - 1) per observation, over the last swing_window_s.
        self._swings: deque[tuple[float, float]] = deque()
        # (time, burst factor on the long window's rate) per observation, as _swings.
        self._bursts: deque[tuple[float, float]] = deque()
        # (time, short window's rate, its busiest second) per recent observation; the first
        # _judged of them have had their burst measured.
        self._seen: deque[tuple[float, float, float]] = deque()
        self._judged = 0
        self.target_qps = 0.0  # the last forecast, for metrics and the timeline
        self.chosen: Pool | None = None  # the last pool decided on

    def swing(self, obs: Observation) -> float:
        """The standard deviation of the short window's rate relative to the long one's over
        the observations of the last ``swing_window_s`` (this one included; 0 until two)."""
        short, long = obs.short, obs.long
        swings = self._swings
        if long.rate_qps > 0 and long.window_s > short.window_s:
            swings.append((obs.now_s, short.rate_qps / long.rate_qps - 1.0))
        while swings and swings[0][0] <= obs.now_s - self.settings.swing_window_s:
            swings.popleft()
        if len(swings) < 2:
            return 0.0
        values = [v for _, v in swings]
        mean = math.fsum(values) / len(values)
        return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))

    def burst(self, obs: Observation) -> float:
        """The ``burst_quantile`` of the bursts seen over the last ``swing_window_s`` (0 until
        one is measured; never where the windows carry no busiest second). A short window's
        burst is its busiest second over the rate it could be the rate's own noise on: the
        highest short-window rate seen from one window before to one window after it, plus
        ``burst_noise_sigmas`` Poisson standard deviations of a second's count (the allowable
        rate covers that much). Judged one window late, so that a step (the rate rising or
        falling to stay, whose edge makes a window's busiest second stand out of its mean) is
        not read as a burst."""
        s = self.settings
        short = obs.short
        width = short.window_s
        seen = self._seen
        bursts = self._bursts
        if short.peak_qps is not None:
            if not seen and not bursts and obs.long.window_s > width:
                # The first decision has no neighbour window yet, and sizes the pool the run
                # starts with: its windows are judged at once against both rates, the long
                # window's busiest second too (a burst of its past the short one missed).
                around = max(short.rate_qps, obs.long.rate_qps)
                peak = max(short.peak_qps, obs.long.peak_qps or 0.0)
                if around > 0:
                    bursts.append((obs.now_s, self._burst_factor(peak, around)))
                self._judged = 1
            seen.append((obs.now_s, short.rate_qps, short.peak_qps))
        # Judge each window whose next window has passed; keep what later ones still need.
        while self._judged < len(seen) and seen[self._judged][0] <= obs.now_s - width:
            t, _, peak = seen[self._judged]
            around = max(r for u, r, _ in seen if t - width <= u <= t + width)
            if around > 0:
                bursts.append((t, self._burst_factor(peak, around)))
            self._judged += 1
        while seen and seen[0][0] < obs.now_s - 3 * width:
            seen.popleft()
            self._judged -= 1
        while bursts and bursts[0][0] <= obs.now_s - s.swing_window_s:
            bursts.popleft()
        if not bursts:
            return 0.0
        values = sorted(f for _, f in bursts)
        return values[min(len(values) - 1, int(s.burst_quantile * len(values)))]

    def _burst_factor(self, peak_qps: float, around_qps: float) -> float:
        """A busiest second over the rate around it plus that rate's own Poisson noise."""
        noise = self.settings.burst_noise_sigmas * math.sqrt(around_qps)
        return peak_qps / (around_qps + noise)

    def forecast_qps(self, obs: Observation) -> float:
        s = self.settings
        short, long = obs.short, obs.long
        level = max(short.rate_qps, long.rate_qps)
        if s.trend_weight > 0 and long.window_s > short.window_s and short.rate_qps > long.rate_qps:
            # The windows' midpoints lie (long - short) / 2 seconds apart.
            slope = (short.rate_qps - long.rate_qps) / ((long.window_s - short.window_s) / 2)
            level = max(level, short.rate_qps + s.trend_weight * slope * self.horizon_s)
        base = level
        if s.swing_sigmas > 0:
            base = max(base, long.rate_qps * (1.0 + s.swing_sigmas * self.swing(obs)))
        if s.burst_quantile > 0:
            # Bursts ride on whatever minute-scale level comes: the two scales multiply.
            base *= max(1.0, self.burst(obs))
        noisy = base + s.noise_sigmas * math.sqrt(base / s.noise_window_s)
        rate = noisy * s.headroom + obs.queue_length / s.backlog_drain_s
        return max(rate, s.min_rate_qps)

    def planning_mix(self, obs: Observation) -> BatchMix | None:
        if obs.long.mix is not None and obs.long.queries >= self.settings.min_mix_queries:
            return obs.long.mix
        return None

    def _pick(self, ladder: Ladder, rate_qps: float, current: Pool) -> Pool | None:
        ladder.ensure(rate_qps, self.budget_per_hr)
        c = choose(
            ladder.known,
            rate_qps,
            current,
            self.scenario.prices,
            margin=self.settings.churn_margin,
            budget_per_hr=self.budget_per_hr,
            floor=self.settings.min_pool,
        )
        return None if c is None else c.pool

    def _suffices(self, ladder: Ladder, pool: Pool, rate_qps: float) -> bool:
        """The rented pool holds the forecast, has the floor and fits the budget."""
        floor = self.settings.min_pool
        if floor is not None and pool_union(pool, floor) != canonical(pool):
            return False
        budget = self.budget_per_hr
        if budget is not None and pool.cost_per_hr(self.scenario.prices) > budget * (1 + 1e-9):
            return False
        return ladder.holds(pool, rate_qps)

    def decide(self, obs: Observation) -> Pool | None:
        rate = self.forecast_qps(obs)
        self.target_qps = rate
        recent = self._recent
        recent.append((obs.now_s, rate))
        while len(recent) > 1 and recent[1][0] <= obs.now_s - self.settings.downscale_delay_s:
            recent.popleft()
        ladder = self.ladders.for_mix(self.planning_mix(obs))
        current = canonical(obs.pool.rented)
        if self._pending is not None:
            decided, pool = self._finish_swap(obs, ladder, current, rate)
            if decided:
                return pool
        if not self._suffices(ladder, current, rate):
            return self._move(current, self._pick(ladder, rate, current))  # up at once
        # Down only to what holds every forecast of the last downscale_delay_s (and not
        # before that much has been seen): a dip shorter than the delay moves nothing, and a
        # falling load is followed a rung at a time as its higher forecasts age out.
        if obs.now_s - self._recent[0][0] < self.settings.downscale_delay_s:
            return None
        peak = max(r for _, r in self._recent)
        target = self._pick(ladder, peak, current)
        prices = self.scenario.prices
        if target is None or target.cost_per_hr(prices) >= current.cost_per_hr(prices):
            return None
        return self._move(current, target)

    def _finish_swap(
        self, obs: Observation, ladder: Ladder, current: Pool, rate_qps: float
    ) -> tuple[bool, Pool | None]:
        """Once the instances of a swap have booted, return what the target does not need
        (at once: the surplus was only rented to bridge the boot). ``(True, pool)`` is this
        tick's decision; ``(False, None)``: decide as usual."""
        pending = self._pending
        if obs.pool.booting.size > 0 and self._suffices(ladder, current, rate_qps):
            return True, None  # still booting: keep the union
        self._pending = None
        if pending is None or not self._suffices(ladder, pending, rate_qps):
            return False, None  # the load moved meanwhile: decide afresh
        pool = self._move(current, pending)
        return pool is not None, pool

    def _move(self, current: Pool, target: Pool | None) -> Pool | None:
        """Make before break: a target that drops instances while adding others is reached
        through the union of both, so the dropped ones serve until the new ones have booted
        (moving straight there left the pool short for a whole boot delay)."""
        if target is None or target == current:
            return None
        union = pool_union(current, target)
        budget = self.budget_per_hr
        affordable = budget is None or union.cost_per_hr(self.scenario.prices) <= budget * (
            1 + 1e-9
        )
        if current.size > 0 and affordable and union != canonical(target) and union != current:
            self._pending = canonical(target)
            target = union
        self.chosen = target
        return target


@AUTOSCALERS.register("kairos")
def kairos_autoscaler(ctx: AutoscaleContext) -> KairosAutoscaler:
    """The heterogeneous controller with its default settings."""
    return KairosAutoscaler(ctx.scenario, ctx.policy, ctx.cloud, ctx.budget_per_hr)
