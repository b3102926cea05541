"""The router: one asyncio process that serves a pool behind one KServe v2 endpoint.

It is three parts, wired here (see docs/runtime.md):

* ``Frontend`` (frontend.py): HTTP routing, validation, auth, metadata, metrics, admin;
* ``Dispatcher`` (dispatcher.py) around the ``Driver`` (distributor/driver.py), the same
  object the simulator drives: the central queue, the policy and its decisions;
* a ``WorkerPool`` (pool.py) from ``POOL_BACKENDS``: local worker processes, remote workers
  given by address, or a Ray cluster.

``RouterConfig`` declares every setting and its default once; ``kairos serve`` reads them.
"""

from __future__ import annotations

import asyncio
import errno
import math
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import orjson

from kairos import limits
from kairos.catalog import Pool
from kairos.distributor import policy_class
from kairos.distributor.driver import Driver
from kairos.errors import ConfigError
from kairos.registry import Registry
from kairos.runtime.aio import pin_to_cpus, settle_heap
from kairos.runtime.dispatcher import Dispatcher, DispatchSettings
from kairos.runtime.frontend import Frontend
from kairos.runtime.http import HttpServer
from kairos.runtime.metrics import RouterMetrics
from kairos.runtime.pool import POOL_BACKENDS, InstanceSpec, WorkerPool
from kairos.runtime.ray_pool import RAY_PLACEMENTS, TYPE_LABEL  # also registers --backend ray
from kairos.runtime.supervisor import HOSTINGS
from kairos.runtime.traffic import PlanWatch
from kairos.runtime.transport import TRANSPORTS
from kairos.runtime.worker import WORKER_MODES
from kairos.scenario import Scenario

LISTEN_LINE = "kairos router listening on"
__all__ = ["LISTEN_LINE", "Router", "RouterConfig", "run_router"]


def _text_line(component: str, message: str) -> str:
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return f"{stamp} kairos {component}: {message}"


def _json_line(component: str, message: str) -> str:
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return orjson.dumps({"ts": stamp, "component": component, "msg": message}).decode()


LOG_FORMATS: Registry[Callable[[str, str], str]] = Registry(
    "log format", "pass --log-format text (the default) or json."
)
LOG_FORMATS.add("text", _text_line)
LOG_FORMATS.add("json", _json_line)


@dataclass(frozen=True)
class RouterConfig:
    """Settings of one router; the defaults here are the CLI's defaults."""

    model: str
    pool: Pool
    policy: str = "kairos"
    host: str = "127.0.0.1"
    port: int = 8000
    backend: str = "local"
    workers: tuple[str, ...] | None = None  # remote workers' addresses; None starts them here
    worker_mode: str = "replay"
    worker_hosting: str = "type"  # local replay workers: a process per instance type or instance
    router_cpus: tuple[int, ...] = ()  # pin the router to these cores (() = no pinning)
    worker_cpus: tuple[int, ...] = ()  # pin local workers to these cores
    transport: str = "tcp"
    handler: str | None = None
    time_scale: float = 1.0
    max_queue: int = 1000
    api_token: str | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    timeout_floor_s: float = 2.0
    # Hang timeout per query: the floor plus this multiple of the profiled p99 service time.
    timeout_p99_multiple: float = 5.0
    # A query is failed (502) once it may have caused this many worker failures in a row.
    max_attempts: int = 3
    drain_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    seed: int = 0
    profiles_path: str | None = None
    policy_options: tuple[tuple[str, Any], ...] = ()
    # Tell the policy the measured transport delay: state.overhead_s = factor x this quantile
    # of the recent worker round-trip overhead (factor 3: the client's HTTP legs, which the
    # router cannot time, behave like the worker legs it can). 0 turns it off.
    overhead_factor: float = 3.0
    overhead_quantile: float = 0.95
    log_format: str = "text"
    # The router keeps the arrival rate and batch mix of this many recent seconds (profile
    # time; GET /v2/traffic, /metrics) and re-checks the pool's headroom this often.
    traffic_window_s: float = 60.0
    plan_refresh_s: float = 15.0
    # --- the Ray backend (--backend ray; docs/ray.md) ---
    ray_address: str | None = None  # a Ray cluster's HOST:PORT (or auto); None starts one here
    ray_placement: str = "resource"  # how an instance finds a node of its type: resource | label
    ray_namespace: str = "kairos"
    ray_router_name: str = "kairos-router"  # the detached router actor (--detach)
    ray_max_restarts: int = -1  # Ray restarts a dead actor this often (-1: without limit)
    ray_instance_cpus: float = 0.0  # CPUs an instance's actor reserves on its node
    ray_instance_gpus: float = 0.0  # GPUs it reserves (Ray then sets CUDA_VISIBLE_DEVICES)
    ray_start_timeout_s: float = 60.0  # serve without instances not placed by then; they join later
    ray_local_slots: int = 1024  # instances of each type a local Ray instance (no address) offers

    @classmethod
    def default(cls, name: str) -> Any:
        """The declared default of setting ``name`` (the CLI shows and uses it)."""
        return next(f.default for f in fields(cls) if f.name == name)

    def check(self) -> None:
        for registry, value in (
            (TRANSPORTS, self.transport),
            (HOSTINGS, self.worker_hosting),
            (WORKER_MODES, self.worker_mode),
            (POOL_BACKENDS, self.backend),
            (LOG_FORMATS, self.log_format),
        ):
            registry.check(value)
        policy_class(self.policy)
        # The ranges the command line enforces, declared once in kairos.limits.
        for limit, number in (
            (limits.MAX_QUEUE, self.max_queue),
            (limits.MAX_ATTEMPTS, self.max_attempts),
            (limits.TIME_SCALE, self.time_scale),
            (limits.TIMEOUT_FLOOR_S, self.timeout_floor_s),
            (limits.DRAIN_TIMEOUT_S, self.drain_timeout_s),
            (limits.TRAFFIC_WINDOW_S, self.traffic_window_s),
            (limits.OVERHEAD_FACTOR, self.overhead_factor),
            (limits.MAX_BODY_BYTES, self.max_body_bytes),
        ):
            limit.check(number)
        if self.workers is not None and len(self.workers) != self.pool.size:
            raise ConfigError(
                f"{len(self.workers)} worker addresses for a pool of {self.pool.size} "
                f"instances ({self.pool}).",
                "give one HOST:PORT per instance, in pool order, or --workers local.",
            )
        for name in (  # settings with no command-line range
            "timeout_p99_multiple",
            "connect_timeout_s",
            "plan_refresh_s",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(
                    f"--{name.replace('_', '-')} {value!r} is not a positive number.",
                    f"pass a positive number (default {self.default(name)}).",
                )
        if not 0.0 < self.overhead_quantile < 1.0:
            raise ConfigError(
                f"overhead quantile {self.overhead_quantile!r} is not in (0, 1).",
                "use e.g. 0.95.",
            )
        if self.api_token is not None and not self.api_token:
            raise ConfigError("--api-token is empty.", "pass a non-empty token or omit it.")
        self._check_ray()

    def _check_ray(self) -> None:
        RAY_PLACEMENTS.check(self.ray_placement)
        if self.backend != "ray":
            if self.ray_address is not None:
                raise ConfigError(
                    f"--address {self.ray_address!r} is a Ray cluster, but the backend is "
                    f"{self.backend!r}.",
                    "add --backend ray, or drop --address.",
                )
            return
        if self.workers is not None:
            raise ConfigError(
                "--workers lists worker addresses, but the Ray backend starts its own workers.",
                "drop --workers, or use --backend local with it.",
            )
        if self.ray_address is None and self.ray_placement == "label" and len(self.pool.types) > 1:
            raise ConfigError(
                f"a local Ray instance is one node and carries one {TYPE_LABEL} label, but pool "
                f"{self.pool} has {len(self.pool.types)} types.",
                "use --ray-placement resource (the default) or join a cluster with --address.",
            )
        if not (math.isfinite(self.ray_start_timeout_s) and self.ray_start_timeout_s > 0):
            raise ConfigError(
                f"Ray start timeout {self.ray_start_timeout_s!r} is not a positive number.",
                f"pass a number of seconds > 0 (default {self.default('ray_start_timeout_s')}).",
            )
        if (
            self.ray_max_restarts < -1
            or min(self.ray_instance_cpus, self.ray_instance_gpus) < 0
            or self.ray_local_slots < 1
        ):
            raise ConfigError(
                f"Ray settings out of range (max restarts {self.ray_max_restarts}, instance "
                f"CPUs {self.ray_instance_cpus}, GPUs {self.ray_instance_gpus}, local slots "
                f"{self.ray_local_slots}).",
                "use max restarts >= -1 (-1: no limit), CPUs and GPUs >= 0, local slots >= 1.",
            )

    def dispatch_settings(self) -> DispatchSettings:
        return DispatchSettings(
            time_scale=self.time_scale,
            max_attempts=self.max_attempts,
            timeout_floor_s=self.timeout_floor_s,
            timeout_p99_multiple=self.timeout_p99_multiple,
            overhead_factor=self.overhead_factor,
            overhead_quantile=self.overhead_quantile,
            traffic_window_s=self.traffic_window_s,
        )

    def instance_spec(self, instance_type: str, j: int) -> InstanceSpec:
        """What instance ``j`` runs (its worker's seed follows from the router's)."""
        return InstanceSpec(
            instance_type=instance_type,
            model=self.model,
            mode=self.worker_mode,
            handler=self.handler,
            time_scale=self.time_scale,
            seed=self.seed * 1000 + j,
            profiles_path=self.profiles_path,
            transport=self.transport,
            cpus=self.worker_cpus,
        )


# Where a router started with the defaults listens (the client commands' default --url).
DEFAULT_URL = f"http://{RouterConfig.default('host')}:{RouterConfig.default('port')}"


class Router:
    """The three parts wired together; ``clock`` and ``pool`` may be injected (tests)."""

    def __init__(
        self,
        cfg: RouterConfig,
        scenario: Scenario,
        *,
        pool: WorkerPool | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        cfg.check()
        self.cfg = cfg
        self.scenario = scenario
        line = LOG_FORMATS.get(cfg.log_format)
        self.log = lambda message: print(line("router", message), file=sys.stderr, flush=True)
        types = cfg.pool.instance_types()
        self.driver = Driver(
            scenario,
            types,
            cfg.policy,
            seed=cfg.seed,
            policy_options=dict(cfg.policy_options),
            start_down=True,
        )
        self.pool = pool if pool is not None else POOL_BACKENDS.get(cfg.backend)(cfg)
        self.metrics = RouterMetrics(
            self.driver.state.type_names,
            lambda: self.dispatcher.active_pool().cost_per_hr(scenario.prices),
            queue_length=lambda: len(self.driver.state.queue),
            in_flight=lambda: sum(q is not None for q in self.driver.state.running),
            workers_up=lambda: len(self.pool.healthy_instances()),
            traffic=lambda: self.frontend.traffic_view(),
        )
        self.frontend = Frontend(cfg, scenario, self.metrics, self.log)
        self.dispatcher = Dispatcher(
            self.driver,
            self.pool,
            self.frontend,
            self.metrics,
            cfg.dispatch_settings(),
            cfg.instance_spec,
            clock=clock,
            log=self.log,
        )
        self.frontend.attach(self.dispatcher)
        self.handle = self.frontend.handle
        self.plan_watch = PlanWatch(scenario, cfg.policy, self.dispatcher.active_pool)
        self.frontend.plan_watch = self.plan_watch
        self._watching: asyncio.Task[None] | None = None

    async def start_workers(self) -> None:
        """Start (or connect to) every worker; unreachable ones keep being retried."""
        types = self.driver.state.instance_type
        specs = [self.cfg.instance_spec(t, j) for j, t in enumerate(types)]
        await self.pool.start(self.dispatcher, specs)
        self._watching = asyncio.ensure_future(
            self.plan_watch.run(self.dispatcher.observed, self.cfg.plan_refresh_s)
        )

    @property
    def ready(self) -> bool:
        return self.frontend.ready

    async def drain(self) -> None:
        """Refuse new queries and wait for accepted ones; answer leftovers with 503."""
        self.frontend.draining = True
        await self.dispatcher.drain(self.cfg.drain_timeout_s)

    async def close(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
        self.plan_watch.close()
        await self.pool.close()


def _listen_error(cfg: RouterConfig, exc: OSError) -> ConfigError:
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
) -> None:
    """Serve until SIGINT/SIGTERM (or ``stop`` is set, when given: a router in a thread), then
    drain accepted queries and stop the workers."""
    router = Router(cfg, scenario)
    pin_to_cpus(cfg.router_cpus)
    server = HttpServer(router.handle, cfg.max_body_bytes)
    try:
        try:
            host, port = await server.start(cfg.host, cfg.port)
        except OSError as exc:
            raise _listen_error(cfg, exc) from None
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
