"""The live autoscaling loop on an in-process router (fake pool, manual clock): it applies the
autoscaler's pools exactly, logs each move, bills each rental, exports its decision in
/metrics, and loses no query across a scale-down."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from kairos.catalog import Pool
from kairos.control.live import AutoscaleLoop, LiveAutoscale, LiveSettings, Move, Rentals
from kairos.errors import ConfigError
from kairos.scenario import Scenario
from kairos.serving.router.config import RouterConfig
from kairos.serving.router.http import HttpRequest
from kairos.serving.router.router import Router
from kairos.serving.settings import DispatchSettings
from kairos.serving.worker.launch import WorkerSpec
from kairos.sim.autoscale import CloudSettings, Observation
from tests.cli_runner import run
from tests.serving.fakes import Answer, FakePool, ManualClock

SMALL = Pool.parse("r5n.large=2")
UP = Pool.parse("g4dn.xlarge=1,r5n.large=2")
DOWN = Pool.parse("r5n.large=1")
SETTINGS = LiveSettings(tick_s=10.0, short_window_s=5.0, long_window_s=20.0)


@dataclass
class HeldPool(FakePool):
    """A fake pool whose added workers answer only when the test says (``boot``)."""

    hold: bool = False

    async def add(self, specs: list[WorkerSpec]) -> list[int]:
        if not self.hold:
            return await super().add(specs)
        first = len(self.types)
        self.types += [s.instance_type for s in specs]
        return list(range(first, len(self.types)))

    def boot(self, j: int) -> None:
        self.up(j)


@dataclass
class Scripted:
    """An autoscaler that answers the pools it is given, one a tick, and keeps what it saw."""

    pools: list[Pool | None]
    name: str = "scripted"
    target_qps: float = 0.0
    seen: list[Observation] = field(default_factory=list)

    def decide(self, obs: Observation) -> Pool | None:
        self.seen.append(obs)
        self.target_qps = 10.0 * len(self.seen)
        return self.pools.pop(0) if self.pools else None


async def held(_seconds: float) -> None:
    """The loop's sleep in these tests: it never wakes, so only the test ticks."""
    await asyncio.Event().wait()


@dataclass
class Rig:
    router: Router
    pool: HeldPool
    clock: ManualClock
    loop: AutoscaleLoop
    logged: list[str]

    def admit(self, batch: int = 10) -> Answer:
        answer = Answer()
        self.router.dispatcher.admit(b"", batch, None, answer, self.clock.now)
        return answer

    def finish(self, j: int, service_ms: float = 5.0) -> None:
        self.pool.finish(j, service_ms)


async def started(r: Rig) -> None:
    """Start the workers, and let the loop's ``run`` reach its first (held) sleep."""
    await r.router.start_workers()
    await asyncio.sleep(0)


def rig(scripted: Scripted, sleep: Callable[[float], Awaitable[None]] = held) -> Rig:
    clock = ManualClock()
    pool = HeldPool()
    cfg = RouterConfig(
        model="dien",
        pool=SMALL,
        policy="fcfs",
        dispatch=DispatchSettings(overhead_factor=0.0),
    )
    control = LiveAutoscale(scripted, SETTINGS, CloudSettings(min_charge_s=0.0), sleep=sleep)
    router = Router(cfg, Scenario.build("dien"), pool=pool, clock=clock, control=control)
    logged: list[str] = []
    router.log = logged.append
    assert control.loop is not None
    control.loop.controls.log = logged.append
    return Rig(router, pool, clock, control.loop, logged)


def test_moves_apply_the_autoscalers_pools_exactly_and_are_logged() -> None:
    scripted = Scripted([UP, None, DOWN])
    r = rig(scripted)

    async def scenario() -> None:
        await started(r)
        r.pool.hold = True
        answers = [r.admit() for _ in range(3)]  # two start, one waits
        r.clock.now = 10.0
        move = await r.loop.tick()
        assert move == Move(10.0, SMALL, UP, move.why if move else "")
        # The g4dn instance was asked for: it boots until its worker answers.
        obs = r.loop.observe()
        assert obs.pool.serving == SMALL and obs.pool.booting == Pool.parse("g4dn.xlarge=1")
        assert obs.queue_length == 1 and obs.in_flight == 2
        r.clock.now = 12.0
        r.pool.boot(2)  # joins, and takes the waiting query at once
        assert r.router.driver.state.running[2] is not None
        r.clock.now = 20.0
        assert await r.loop.tick() is None  # None: keep the pool
        for j in (0, 1, 2):
            r.finish(j)
        r.clock.now = 30.0
        move = await r.loop.tick()
        assert move is not None and (move.from_pool, move.to_pool) == (UP, DOWN)
        assert r.router.dispatcher.active_pool() == DOWN
        await asyncio.sleep(0)
        assert all(a.status == 200 for a in answers)
        await r.router.close()

    asyncio.run(scenario())
    # Each move is one line: time, from, to, and why (the rate the autoscaler planned for).
    *lines, summary = [m for m in r.logged if m.startswith("autoscale")]
    assert lines == [m.line() for m in r.loop.moves]
    # On stopping, what it rented, billed: two r5n.large for 30 s, the g4dn from 10 to 30 s.
    prices = r.router.scenario.prices
    cost = 2 * 30 * prices.price_per_hr("r5n.large") + 20 * prices.price_per_hr("g4dn.xlarge")
    assert summary == f"autoscale: 2 moves, ${cost / 3600:.4f} billed over 30.0 s"
    assert lines[0].startswith(f"autoscale t=10.0s: {SMALL} -> {UP} (target 10.0 q/s; seen ")
    assert lines[1].startswith(f"autoscale t=30.0s: {UP} -> {DOWN} (target 30.0 q/s; seen ")
    # The autoscaler saw the traffic from the first query on: 3 queries in the first 10 s.
    first = scripted.seen[0]
    assert (first.short.window_s, first.short.queries) == (5.0, 0)
    assert (first.long.window_s, first.long.queries, first.long.rate_qps) == (10.0, 3, 0.3)
    assert first.pool.rented == SMALL
    # Rentals: the two first from 0; the g4dn from its move at 10; one r5n and the g4dn
    # released by the move at 30 (both idle then).
    rentals = r.loop.rentals
    assert rentals.requested_s == {0: 0.0, 1: 0.0, 2: 10.0}
    assert sorted(rentals.released_s.items()) in ([(0, 30.0), (2, 30.0)], [(1, 30.0), (2, 30.0)])


def test_scale_down_drains_and_loses_no_query() -> None:
    r = rig(Scripted([DOWN]))

    async def scenario() -> None:
        await started(r)
        answers = [r.admit() for _ in range(5)]  # two run, three wait
        r.clock.now = 10.0
        move = await r.loop.tick()
        assert move is not None and move.to_pool == DOWN
        # Both instances were busy: one keeps serving, the other drains its query.
        obs = r.loop.observe()
        assert obs.pool.serving == DOWN and obs.pool.draining == 1
        assert r.loop.rented_cost_per_hr() == pytest.approx(
            SMALL.cost_per_hr(r.router.scenario.prices)
        )
        (retired,) = r.router.driver.retired
        kept = 1 - retired
        r.clock.now = 10.5
        r.finish(retired)  # its query is answered; it takes no new one
        await asyncio.sleep(0)
        assert r.pool.removed == [retired]
        r.loop.note_releases()
        assert r.loop.rentals.released_s == {retired: 10.5}
        t = 11.0
        while r.pool.in_flight:
            r.clock.now = t
            r.finish(kept)
            t += 1.0
        await asyncio.sleep(0)
        assert [a.status for a in answers] == [200] * 5
        assert all(sent.instance == kept for sent in r.pool.log[2:])
        await r.router.close()

    asyncio.run(scenario())


def test_metrics_export_the_decision() -> None:
    r = rig(Scripted([UP]))

    def metrics() -> dict[str, float]:
        response = r.router.handle(HttpRequest("GET", "/metrics", {}, b"", 0.0))
        text = response.body.decode()  # type: ignore[union-attr]
        found = re.findall(r"^(kairos_control_[a-z_]+(?:\{[^}]*\})?) (\S+)$", text, re.M)
        return {name: float(value) for name, value in found}

    async def scenario() -> None:
        await started(r)
        before = metrics()
        assert math.isnan(before["kairos_control_target_rate_qps"])
        assert math.isnan(before["kairos_control_cost_per_hour"])
        r.admit()
        r.clock.now = 10.0
        await r.loop.tick()
        after = metrics()
        prices = r.router.scenario.prices
        assert after["kairos_control_target_rate_qps"] == 10.0
        assert after['kairos_control_target_instances{instance_type="g4dn.xlarge"}'] == 1.0
        assert after['kairos_control_target_instances{instance_type="r5n.large"}'] == 2.0
        assert after["kairos_control_cost_per_hour"] == pytest.approx(UP.cost_per_hr(prices))
        assert after["kairos_control_moves_total"] == 1.0
        await r.router.close()

    asyncio.run(scenario())


def test_run_ticks_every_tick_s_from_the_first_query() -> None:
    """``run`` on the router's clock: no tick before traffic, then one every ``tick_s``."""
    clock_box: list[ManualClock] = []
    slept: list[float] = []

    async def advance(wall_s: float) -> None:
        slept.append(wall_s)
        clock_box[0].now += wall_s
        await asyncio.sleep(0)

    scripted = Scripted([])
    r = rig(scripted, sleep=advance)
    clock_box.append(r.clock)

    async def scenario() -> None:
        await r.router.start_workers()
        for _ in range(3):
            await asyncio.sleep(0)
        assert r.loop.ticks == 0  # no traffic yet: it only waits
        r.admit()
        start = r.clock.now
        while len(scripted.seen) < 3:  # decisions run in a thread: wait for the third
            await asyncio.sleep(0)
        assert [o.now_s for o in scripted.seen] == [start + 10.0, start + 20.0, start + 30.0]
        await r.router.close()

    asyncio.run(scenario())


def test_rentals_are_billed_per_second_with_the_minimum_charge() -> None:
    rentals = Rentals()
    rentals.request(0, "r5n.large", 0.0)
    rentals.request(1, "g4dn.xlarge", 100.0)
    rentals.release(1, 130.0)  # 30 s alive: billed the 60 s minimum
    rentals.request(2, "r5n.large", 500.0)  # after the span: not billed
    prices = Scenario.build("dien").prices
    cloud = CloudSettings(min_charge_s=60.0)
    cost = rentals.cost_dollars(prices, cloud, 0.0, 400.0)
    r5n, g4dn = prices.price_per_hr("r5n.large"), prices.price_per_hr("g4dn.xlarge")
    assert cost == pytest.approx(r5n * 400 / 3600 + g4dn * 60 / 3600)


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="--autoscale-tick-s"):
        LiveSettings(tick_s=0.0)
    with pytest.raises(ConfigError, match="long_window_s"):
        LiveSettings(long_window_s=-1.0)


@dataclass
class TickingClock:
    """A clock that moves a microsecond at every reading."""

    now: float = 0.0

    def __call__(self) -> float:
        self.now += 1e-6
        return self.now


def test_both_windows_are_read_at_one_instant() -> None:
    """Early on both windows reach back to the first query: they must cover the same span,
    or the autoscaler reads a trend between two rates that differ by clock jitter alone."""
    scripted = Scripted([])
    r = rig(scripted)
    clock = TickingClock()
    r.router.clock.wall = clock  # the loop reads the router's clock through this
    r.router.dispatcher.clock = clock

    async def scenario() -> None:
        await started(r)
        for _ in range(7):
            r.admit()
        clock.now = 3.0  # both windows (5 s and 20 s) reach back to the first query
        obs = r.loop.observe()
        assert obs.short.window_s == obs.long.window_s
        assert (obs.short.queries, obs.short.rate_qps) == (obs.long.queries, obs.long.rate_qps)
        await r.router.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--autoscale-tick-s", "5"], "--autoscale-tick-s applies to an autoscaled pool"),
        (["--boot-s", "30"], "--boot-s applies to an autoscaled pool"),
        (["--autoscale", "nope"], "nope"),
        (["--autoscale", "static-peak"], "needs the whole trace"),
        (["--autoscale", "kairos", "--detach"], "--autoscale does not run in a detached router"),
    ],
)
def test_serve_refuses_bad_autoscale_options(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    message: str,
) -> None:
    def served(_coroutine: object) -> None:
        _coroutine.close()  # type: ignore[attr-defined]
        raise AssertionError("serve started a router instead of refusing")

    monkeypatch.setattr("kairos.aio.run_event_loop", served)
    code, out, err = run(capsys, "serve", "--model", "rm2", "--pool", "r5n.large=1", *extra)
    assert code == 2 and out == "", (out, err)
    (line,) = err.strip().splitlines()
    assert message in line and "To fix:" in line
