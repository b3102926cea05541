"""The autoscaler, live: a control loop beside a running router (``kairos serve --autoscale``).

The same ``Autoscaler`` as the simulator's autoscaled replay (``kairos.sim.timeline``), fed the
same ``Observation`` and applied through the resize path that exists (POST /v2/admin/pool's:
new instances join once their workers answer, removed ones finish their query first, so a
move loses no query). The loop runs in the router's event loop, injected into it
(``run_router(..., control=LiveAutoscale(...))``); the router knows it only as a
``ControlFactory``.

Time is the router's clock (profile seconds: wall time divided by ``--time-scale``), so a
trace replayed at a compressed time scale is decided on in trace time. The loop waits for
the first query and then ticks every ``tick_s`` from it (the replay ticks from the trace's
start, at ``tick_s``, ``2 tick_s``...): before any traffic the pool given with ``--pool``
stays. Each tick:

* observes: the pool serving (workers up), booting (added, workers not answered yet) and
  draining (removed, finishing a query); the queue; queries in flight; the traffic over the
  short and the long window, counted from the first query (the router keeps the long one);
* asks the autoscaler (in a thread: planning a ladder can take a second of CPU, and the
  router's loop keeps serving meanwhile);
* moves when the answer differs from the rented pool: one log line (time, from, to, why), the
  gauges (target rate, pool by type, cost rate), and the resize. A move asked while the last
  one is still being applied (workers starting) waits for the next tick.

Every instance's rental is kept (asked for, released when its drain ends), so a run can be
billed the cloud's way (``Rentals.cost_dollars``: per second, with the minimum charge).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from kairos.catalog import Pool, PriceTable
from kairos.errors import ConfigError, KairosError
from kairos.limits import TICK_S
from kairos.serving.router.router import RouterControls
from kairos.serving.router.traffic import Traffic
from kairos.serving.settings import Settings, setting
from kairos.sim.autoscale import Autoscaler, CloudSettings, Observation, TrafficWindow
from kairos.sim.timeline import Rental, TimelineSettings

POLL_WALL_S = 0.02  # while an instance drains or no query came yet: wall seconds between looks

Sleep = Callable[[float], Awaitable[None]]  # how the loop waits (wall seconds); tests hold it


@dataclass(frozen=True)
class LiveSettings(Settings):
    """The live loop (``kairos serve`` reads these defaults): which autoscaler, how often it
    decides (profile seconds, as the simulator's ``--tick-s``), the windows it sees (the
    simulator's), and the budget it may not exceed. The cloud it plans for (boot delays,
    minimum charge) is a ``CloudSettings``."""

    autoscaler: str | None = setting(None, "--autoscale")
    tick_s: float = setting(TimelineSettings.tick_s, "--autoscale-tick-s")
    short_window_s: float = TimelineSettings.short_window_s
    long_window_s: float = TimelineSettings.long_window_s
    budget_per_hr: float | None = setting(None, "--budget-per-hr")

    def __post_init__(self) -> None:
        TICK_S.check(self.tick_s, "--autoscale-tick-s")
        for name in ("short_window_s", "long_window_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(
                    f"{name} {value!r} is not a positive number of seconds.",
                    f"give {name} in seconds, e.g. {getattr(TimelineSettings, name)}.",
                )


@dataclass(frozen=True)
class Move:
    """The loop changed the rented pool at ``time_s`` (router clock, profile seconds)."""

    time_s: float
    from_pool: Pool
    to_pool: Pool
    why: str

    def line(self) -> str:
        why = f" ({self.why})" if self.why else ""
        return f"autoscale t={self.time_s:.1f}s: {self.from_pool} -> {self.to_pool}{why}"


@dataclass
class Rentals:
    """Each instance's life on the router's clock: asked for, and released (its drain over)."""

    types: dict[int, str] = field(default_factory=dict)
    requested_s: dict[int, float] = field(default_factory=dict)
    released_s: dict[int, float] = field(default_factory=dict)

    def request(self, j: int, instance_type: str, now_s: float) -> None:
        if j not in self.requested_s:
            self.types[j] = instance_type
            self.requested_s[j] = now_s

    def release(self, j: int, now_s: float) -> None:
        self.released_s.setdefault(j, now_s)

    def rented(self, now_s: float) -> list[int]:
        """Instances billed at ``now_s``."""
        return [
            j
            for j, t0 in self.requested_s.items()
            if t0 <= now_s and self.released_s.get(j, math.inf) > now_s
        ]

    def between(self, prices: PriceTable, start_s: float, end_s: float) -> tuple[Rental, ...]:
        """The rentals within ``[start_s, end_s]`` (a run's span: those before it start at
        ``start_s``, those after it end at ``end_s``), as the simulator reports them."""
        out = []
        for j in sorted(self.requested_s):
            t0 = max(self.requested_s[j], start_s)
            t1 = min(self.released_s.get(j, end_s), end_s)
            if t1 < t0 or (t1 == t0 and self.requested_s[j] < start_s):
                continue  # released before the span began
            t = self.types[j]
            out.append(Rental(j, t, prices.price_per_hr(t), t0 - start_s, None, t1 - start_s))
        return tuple(out)

    def cost_dollars(
        self, prices: PriceTable, cloud: CloudSettings, start_s: float, end_s: float
    ) -> float:
        """What the cloud bills for ``[start_s, end_s]``: per second, at least its minimum."""
        return sum(r.cost_dollars(cloud) for r in self.between(prices, start_s, end_s))


def _window(traffic: Traffic) -> TrafficWindow:
    return TrafficWindow(traffic.span_s, traffic.queries, traffic.rate_qps, traffic.mix)


def _why(autoscaler: Autoscaler, obs: Observation) -> str:
    """What the autoscaler says of its decision (a ``why`` text, or the rate it planned
    for), and what it saw."""
    said = getattr(autoscaler, "why", None)
    parts = [str(said)] if said else []
    target = getattr(autoscaler, "target_qps", None)
    if isinstance(target, int | float):
        parts.append(f"target {target:.1f} q/s")
    parts.append(
        f"seen {obs.short.rate_qps:.1f} q/s short, {obs.long.rate_qps:.1f} long, "
        f"queue {obs.queue_length}"
    )
    return "; ".join(parts)


class AutoscaleLoop:
    """One router's loop (see the module docstring). ``tick`` is one decision; ``run`` ticks
    on the router's clock until cancelled (tests call ``tick`` with a manual clock)."""

    def __init__(
        self,
        controls: RouterControls,
        autoscaler: Autoscaler,
        settings: LiveSettings,
        cloud: CloudSettings,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.controls = controls
        self.sleep = sleep
        self.autoscaler = autoscaler
        self.settings = settings
        self.cloud = cloud
        self.prices = controls.scenario.prices
        self.moves: list[Move] = []
        self.rentals = Rentals()
        self.ticks = 0
        self.errors = 0
        self._resizing: asyncio.Task[None] | None = None
        self._ticking = asyncio.Lock()
        now = controls.now_s()
        for j in controls.rented():
            self.rentals.request(j, controls.instance_type(j), now)

    # --- one decision -------------------------------------------------------------------------

    def observe(self) -> Observation:
        c, s = self.controls, self.settings
        now = c.now_s()
        since = c.first_query_s()
        since = now if since is None else since
        return Observation(
            now,
            c.pool_state(),
            c.queue_length(),
            c.in_flight(),
            # One clock reading for both: a trend read from two windows of different
            # lengths needs their spans exact.
            _window(c.traffic(now, s.short_window_s, since)),
            _window(c.traffic(now, s.long_window_s, since)),
        )

    async def tick(self) -> Move | None:
        """Observe, decide, and start the move (returned) if there is one."""
        async with self._ticking:  # one decision at a time, whoever ticks
            return await self._tick()

    async def _tick(self) -> Move | None:
        self.ticks += 1
        self.note_releases()
        obs = self.observe()
        try:
            decided = await asyncio.to_thread(self.autoscaler.decide, obs)
        except KairosError as exc:  # a bad decision is logged; the router keeps serving
            self.errors += 1
            self.controls.log(f"autoscale t={obs.now_s:.1f}s: no decision ({exc})")
            return None
        rented = Pool.of(sorted(obs.pool.rented.as_dict().items()))
        target = getattr(self.autoscaler, "target_qps", None)
        if decided is None or decided.as_dict() == rented.as_dict():
            self._gauges(target, rented)
            return None
        if self._resizing is not None and not self._resizing.done():
            self.controls.log(
                f"autoscale t={obs.now_s:.1f}s: {rented} -> {decided} waits for the last move"
            )
            return None
        move = Move(obs.now_s, rented, decided, _why(self.autoscaler, obs))
        self.moves.append(move)
        self.controls.log(move.line())
        self.controls.gauges.moves.inc()
        self._resizing = asyncio.ensure_future(self._resize(move))
        # The resize's bookkeeping (instances added and retired) runs before its first wait
        # for a worker: let it run, then bill what it asked for from the move's time.
        await asyncio.sleep(0)
        self.note_rentals(move.time_s)
        self._gauges(target, decided)
        return move

    async def _resize(self, move: Move) -> None:
        c = self.controls
        try:
            await c.resize(move.to_pool)
        except Exception as exc:  # noqa: BLE001 - the router must outlive a failed move
            self.errors += 1
            c.log(f"autoscale t={c.now_s():.1f}s: move to {move.to_pool} failed ({exc!r:.300})")
        self.note_rentals(move.time_s)

    def _gauges(self, target_qps: object, pool: Pool) -> None:
        rate = float(target_qps) if isinstance(target_qps, int | float) else math.nan
        cost = self.rented_cost_per_hr()
        self.controls.gauges.set(rate, pool.as_dict(), cost)

    def rented_cost_per_hr(self) -> float:
        """$/h of what is billed now: serving, booting and draining instances."""
        now = self.controls.now_s()
        return sum(
            self.prices.price_per_hr(self.rentals.types[j]) for j in self.rentals.rented(now)
        )

    def note_rentals(self, asked_s: float) -> None:
        """Bill instances added since the last look from ``asked_s`` (when they were asked
        for), and end the rentals of those released."""
        c = self.controls
        for j in c.rented():
            self.rentals.request(j, c.instance_type(j), asked_s)
        self.note_releases()

    def note_releases(self) -> None:
        """End every rental that has ended: removed and no longer draining."""
        c = self.controls
        live = set(c.rented()) | set(c.draining())
        now = c.now_s()
        for j in self.rentals.requested_s:
            if j not in live:
                self.rentals.release(j, now)

    # --- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        finally:  # stopped with the router: what the run rented, billed the cloud's way
            c = self.controls
            now = c.now_s()
            cost = self.rentals.cost_dollars(self.prices, self.cloud, 0.0, now)
            c.log(f"autoscale: {len(self.moves)} moves, ${cost:.4f} billed over {now:.1f} s")

    async def _run(self) -> None:
        c, tick_s = self.controls, self.settings.tick_s
        while c.first_query_s() is None:
            await self.sleep(POLL_WALL_S)
        first = c.first_query_s()
        assert first is not None
        k = 1
        while True:
            await self._sleep_until(first + k * tick_s)
            await self.tick()
            # Ticks a slow decision overran are skipped, not run back to back.
            k = max(k + 1, math.floor((c.now_s() - first) / tick_s) + 1)

    async def _sleep_until(self, time_s: float) -> None:
        """Sleep until the router's clock reads ``time_s``; while an instance drains, look
        often, so its rental ends when its query does."""
        c = self.controls
        while (left_s := time_s - c.now_s()) > 0:
            wall_s = left_s * c.time_scale
            if c.draining():
                wall_s = min(wall_s, POLL_WALL_S)
            await self.sleep(wall_s)
            self.note_releases()


@dataclass
class LiveAutoscale:
    """What ``kairos serve --autoscale`` injects into the router: builds the loop for the
    router's controls and keeps it (``loop``) for whoever reads its moves and rentals."""

    autoscaler: Autoscaler
    settings: LiveSettings = field(default_factory=LiveSettings)
    cloud: CloudSettings = field(default_factory=CloudSettings)
    sleep: Sleep = asyncio.sleep
    loop: AutoscaleLoop | None = None

    @property
    def keep_s(self) -> float:
        return max(self.settings.short_window_s, self.settings.long_window_s)

    def __call__(self, controls: RouterControls) -> AutoscaleLoop:
        self.loop = AutoscaleLoop(controls, self.autoscaler, self.settings, self.cloud, self.sleep)
        return self.loop
