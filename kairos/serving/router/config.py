"""The router's settings: every setting and its default declared once; ``kairos serve`` reads
them."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import orjson

from kairos import limits
from kairos.catalog import Pool
from kairos.distributor import policy_class
from kairos.errors import ConfigError
from kairos.protocol.api import DEFAULT_HOST, DEFAULT_PORT
from kairos.registry import Registry
from kairos.serving.pool.base import POOL_BACKENDS, InstanceSpec
from kairos.serving.pool.supervisor import HOSTINGS
from kairos.serving.pool.transport import TRANSPORTS
from kairos.serving.ray.pool import RAY_PLACEMENTS, TYPE_LABEL
from kairos.serving.router.dispatcher import DispatchSettings
from kairos.serving.worker.service import WORKER_MODES


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
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
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
