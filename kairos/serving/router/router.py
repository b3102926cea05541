"""The router: one asyncio process that serves a pool behind one KServe v2 endpoint.

It is three parts, wired here (see docs/runtime.md):

* ``Frontend`` (frontend.py): HTTP routing, validation, auth, metadata, metrics, admin;
* ``Dispatcher`` (dispatcher.py) around the ``Driver`` (distributor/driver.py), the same
  object the simulator drives: the central queue, the policy and its decisions;
* a ``WorkerPool`` (serving/pool/) from ``POOL_BACKENDS``: local worker processes, remote
  workers given by address, or a Ray cluster.

They are built once, bottom-up, each given what it reads: the driver and the pool, the
router's clock and traffic window, the headroom watch and the traffic view, the metrics, the
answers, the dispatcher, and last the front end. Nothing is attached afterwards.

``RouterConfig`` is made of each part's settings (serving/settings.py); every default is
declared once there, and ``kairos serve`` reads them.

A control loop may run beside the router, in its event loop (``control=``, injected like the
headroom watch: ``kairos serve --autoscale`` passes ``kairos.control.live``'s). It sees the
router through ``RouterControls``: the pool serving, booting and draining, the queue, the
traffic over the windows it asks for, and the resize path that POST /v2/admin/pool takes.
"""

from __future__ import annotations

import asyncio
import errno
import signal
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Protocol

from kairos.aio import pin_to_cpus, settle_heap
from kairos.catalog import Pool
from kairos.distributor.driver import Driver
from kairos.errors import ConfigError
from kairos.protocol.api import LISTEN_LINE
from kairos.scenario import Scenario
from kairos.serving.pool.base import POOL_BACKENDS, WorkerPool
from kairos.serving.router.config import LOG_FORMATS, RouterConfig
from kairos.serving.router.dispatcher import Dispatcher, RouterClock, active_pool
from kairos.serving.router.frontend import Answers, Frontend, TrafficView
from kairos.serving.router.http import HttpServer
from kairos.serving.router.metrics import ControlGauges, RouterMetrics
from kairos.serving.router.traffic import HeadroomFactory, HeadroomWatch, Traffic, TrafficWindow
from kairos.serving.settings import HttpSettings
from kairos.sim.autoscale import PoolState

__all__ = ["ControlFactory", "ControlLoop", "Router", "RouterControls", "run_router"]


class RouterControls:
    """What a control loop beside the router reads and does: the router's clock (profile
    seconds), its pool as rented (serving: up; booting: added, worker not answered yet;
    draining: removed, still finishing a query), queue, traffic, the resize path and the
    control gauges. The loop runs in the router's event loop, so each read is consistent."""

    def __init__(
        self,
        scenario: Scenario,
        driver: Driver,
        dispatcher: Dispatcher,
        clock: RouterClock,
        window: TrafficWindow,
        gauges: ControlGauges,
        log: Callable[[str], None],
    ) -> None:
        self.scenario = scenario
        self.gauges = gauges
        self.log = log
        self.time_scale = clock.scale  # wall seconds per profile second
        self.now_s = clock.now_s
        self._driver = driver
        self._dispatcher = dispatcher
        self._window = window

    def first_query_s(self) -> float | None:
        """When the first query arrived (None before any)."""
        return self._window.since_s

    def traffic(self, now_s: float, window_s: float, since_s: float) -> Traffic:
        """The queries admitted over the ``window_s`` before ``now_s`` (counted from
        ``since_s`` when that is later); the router keeps as much as the loop's ``keep_s``
        asked. Windows read at one ``now_s`` cover the same span when both reach back to
        ``since_s``."""
        return self._window.over(now_s, window_s, since_s)

    def instance_type(self, j: int) -> str:
        return self._driver.state.instance_type[j]

    def rented(self) -> list[int]:
        """Instances serving or booting (not removed)."""
        return self._driver.active

    def draining(self) -> list[int]:
        """Removed instances still finishing their query."""
        running = self._driver.state.running
        return sorted(j for j in self._driver.retired if running[j] is not None)

    def pool_state(self) -> PoolState:
        state = self._driver.state
        serving: dict[str, int] = {}
        booting: dict[str, int] = {}
        for j in self._driver.active:
            which = serving if state.up[j] else booting
            t = state.instance_type[j]
            which[t] = which.get(t, 0) + 1
        # Types by name: the same pool reads the same whatever order its instances joined in.
        return PoolState(
            Pool.of(sorted(serving.items())), Pool.of(sorted(booting.items())), len(self.draining())
        )

    def queue_length(self) -> int:
        return len(self._driver.state.queue)

    def in_flight(self) -> int:
        return self._dispatcher.in_flight()

    async def resize(self, pool: Pool) -> dict[str, list[int]]:
        """Rent ``pool``: the resize of POST /v2/admin/pool (new instances join once their
        workers answer; removed ones finish their query first)."""
        self.scenario.check_pool(pool)
        return await self._dispatcher.resize(pool)


class ControlLoop(Protocol):
    async def run(self) -> None: ...


class ControlFactory(Protocol):
    """Builds the loop that runs beside the router (``kairos.control.live``)."""

    @property
    def keep_s(self) -> float:
        """Seconds of traffic the loop reads (the router keeps at least these)."""
        ...

    def __call__(self, controls: RouterControls) -> ControlLoop: ...


class Router:
    """The three parts wired together; ``clock`` and ``pool`` may be injected (tests)."""

    def __init__(
        self,
        cfg: RouterConfig,
        scenario: Scenario,
        *,
        pool: WorkerPool | None = None,
        clock: Callable[[], float] = time.perf_counter,
        headroom: HeadroomFactory | None = None,
        control: ControlFactory | None = None,
    ) -> None:
        cfg.check()
        self.cfg = cfg
        self.scenario = scenario
        line = LOG_FORMATS.get(cfg.log_format)
        self.log = lambda message: print(line("router", message), file=sys.stderr, flush=True)
        types = cfg.pool.instance_types()
        driver = self.driver = Driver(
            scenario,
            types,
            cfg.policy,
            seed=cfg.seed,
            policy_options=dict(cfg.policy_options),
            start_down=True,
        )
        if pool is None:
            pool = POOL_BACKENDS.get(cfg.workers.backend)(cfg.pool_request(scenario.profiles))
        self.pool = pool
        dispatch = cfg.dispatch
        self.clock = RouterClock(clock, dispatch.time_scale)
        window = TrafficWindow(
            dispatch.traffic_window_s, keep_s=None if control is None else control.keep_s
        )
        running = partial(active_pool, driver)
        self.plan_watch: HeadroomWatch | None = (
            None if headroom is None else headroom(scenario, cfg.policy, running)
        )
        self.traffic = TrafficView(
            scenario, cfg.policy, window, self.clock.now_s, running, self.plan_watch
        )
        self.metrics = RouterMetrics(
            driver.state.type_names,
            lambda: running().cost_per_hr(scenario.prices),
            queue_length=lambda: len(driver.state.queue),
            in_flight=lambda: self.dispatcher.in_flight(),
            workers_up=lambda: len(pool.healthy_instances()),
            traffic=self.traffic.as_dict,
        )
        self.dispatcher = Dispatcher(
            driver,
            pool,
            Answers(scenario, self.metrics),
            self.metrics,
            dispatch,
            cfg.instance_spec,
            clock=self.clock,
            traffic=window,
            log=self.log,
        )
        self.frontend = Frontend(
            cfg.http,
            scenario,
            policy=cfg.policy,
            time_scale=dispatch.time_scale,
            pool=pool,
            dispatcher=self.dispatcher,
            traffic=self.traffic,
            metrics=self.metrics,
            log=self.log,
        )
        self.handle = self.frontend.handle
        self._watching: asyncio.Task[None] | None = None
        self.control: ControlLoop | None = None
        if control is not None:
            self.control = control(
                RouterControls(
                    scenario,
                    driver,
                    self.dispatcher,
                    self.clock,
                    window,
                    self.metrics.control,
                    self.log,
                )
            )
        self._controlling: asyncio.Task[None] | None = None

    async def start_workers(self) -> None:
        """Start (or connect to) every worker; unreachable ones keep being retried."""
        types = self.driver.state.instance_type
        specs = [self.cfg.instance_spec(t, j) for j, t in enumerate(types)]
        await self.pool.start(self.dispatcher, specs)
        if self.plan_watch is not None:
            self._watching = asyncio.ensure_future(
                self.plan_watch.run(self.traffic.observed, self.cfg.plan_refresh_s)
            )
        if self.control is not None:
            self._controlling = asyncio.ensure_future(self.control.run())

    @property
    def ready(self) -> bool:
        return self.frontend.ready

    async def drain(self) -> None:
        """Refuse new queries and wait for accepted ones; answer leftovers with 503. The
        control loop stops first: a draining router is not resized."""
        await self._stop_control()
        self.frontend.draining = True
        await self.dispatcher.drain()

    async def _stop_control(self) -> None:
        task, self._controlling = self._controlling, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        await self._stop_control()
        if self._watching is not None:
            self._watching.cancel()
        if self.plan_watch is not None:
            self.plan_watch.close()
        await self.pool.close()


def _listen_error(cfg: HttpSettings, exc: OSError) -> ConfigError:
    where = f"{cfg.host}:{cfg.port}"
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(
            f"the router cannot listen on {where}: the port is in use.",
            "pick a free --port (0 = any free port) or stop what is using it.",
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ConfigError(
            f"the router may not listen on {where} ({exc.strerror}).",
            "use a port above 1023, or run with the rights to bind low ports.",
        )
    return ConfigError(
        f"the router cannot listen on {where}: host {cfg.host!r} is not an address of this "
        f"machine ({exc.strerror or exc}).",
        "pass --host 127.0.0.1 (this machine only), 0.0.0.0 (every interface) or one of its "
        "own addresses.",
    )


async def run_router(
    cfg: RouterConfig,
    scenario: Scenario,
    on_listening: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
    headroom: HeadroomFactory | None = None,
    control: ControlFactory | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (or ``stop`` is set, when given: a router in a thread), then
    drain accepted queries and stop the workers. ``control``: a loop run beside the router."""
    router = Router(cfg, scenario, headroom=headroom, control=control)
    pin_to_cpus(cfg.router_cpus)
    server = HttpServer(router.handle, cfg.http.max_body_bytes)
    try:
        try:
            host, port = await server.start(cfg.http.host, cfg.http.port)
        except OSError as exc:
            raise _listen_error(cfg.http, exc) from None
        url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        print(
            f"{LISTEN_LINE} {url} (model {scenario.model}, pool {cfg.pool}, policy "
            f"{cfg.policy}, QoS {scenario.qos_ms:g} ms)",
            flush=True,
        )
        if on_listening is not None:
            on_listening(url)
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
        await router.start_workers()
        settle_heap()
        up = len(router.pool.healthy_instances())
        print(f"kairos router ready: {up} of {cfg.pool.size} workers up", flush=True)
        await stop.wait()
        router.log("draining")
        await router.drain()
    finally:
        await server.stop()
        await router.close()
