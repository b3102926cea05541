"""The router's settings, composed of the settings each part takes (serving/settings.py), and
the one check of them all; ``kairos serve`` builds it from its options.

This module sits above the parts (it checks names against their registries) and no part
imports it: each part is given its own settings value by the router.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from kairos import limits
from kairos.catalog import Pool
from kairos.distributor import policy_class
from kairos.errors import ConfigError
from kairos.profiles import ModelProfiles
from kairos.registry import Registry
from kairos.serving.pool.base import POOL_BACKENDS
from kairos.serving.pool.supervisor import HOSTINGS
from kairos.serving.pool.transport import TRANSPORTS
from kairos.serving.ray.placement import RAY_PLACEMENTS, TYPE_LABEL
from kairos.serving.settings import (
    DispatchSettings,
    HttpSettings,
    PoolRequest,
    PoolSettings,
    RaySettings,
    Settings,
    setting,
)
from kairos.serving.worker.launch import WorkerSpec
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
class RouterConfig(Settings):
    """Settings of one router; the defaults here and in its parts are the CLI's defaults.

    What is served and how it is decided (model, pool, policy, seed) and the router process's
    own settings sit at the top; each part's settings are one value of their own.
    """

    model: str
    pool: Pool
    policy: str = setting("kairos", "--policy")
    policy_options: tuple[tuple[str, Any], ...] = setting((), "--policy-option")
    seed: int = setting(0, "--seed")
    log_format: str = setting("text", "--log-format")
    router_cpus: tuple[int, ...] = setting((), "--router-cpus")  # () = no pinning
    plan_refresh_s: float = 15.0  # how often the headroom watch re-checks the pool
    http: HttpSettings = HttpSettings()
    dispatch: DispatchSettings = DispatchSettings()
    workers: PoolSettings = PoolSettings()
    ray: RaySettings = RaySettings()

    @classmethod
    def from_command_line(cls, given: Mapping[str, Any], model: str, pool: Pool) -> RouterConfig:
        """The config ``kairos serve`` asks for: ``given`` maps each option to its parsed
        value; every setting reads its own option (``Settings.from_options``)."""
        return cls(
            model=model,
            pool=pool,
            **cls.options(given),
            http=HttpSettings.from_options(given),
            dispatch=DispatchSettings.from_options(given),
            workers=PoolSettings.from_options(given),
            ray=RaySettings.from_options(given),
        )

    def check(self) -> None:
        http, dispatch, workers = self.http, self.dispatch, self.workers
        for registry, value in (
            (TRANSPORTS, workers.transport),
            (HOSTINGS, workers.hosting),
            (WORKER_MODES, workers.mode),
            (POOL_BACKENDS, workers.backend),
            (LOG_FORMATS, self.log_format),
        ):
            registry.check(value)
        policy_class(self.policy)
        # The ranges the command line enforces, declared once in kairos.limits.
        for limit, number in (
            (limits.MAX_QUEUE, http.max_queue),
            (limits.MAX_ATTEMPTS, dispatch.max_attempts),
            (limits.TIME_SCALE, dispatch.time_scale),
            (limits.TIMEOUT_FLOOR_S, dispatch.timeout_floor_s),
            (limits.DRAIN_TIMEOUT_S, dispatch.drain_timeout_s),
            (limits.TRAFFIC_WINDOW_S, dispatch.traffic_window_s),
            (limits.OVERHEAD_FACTOR, dispatch.overhead_factor),
            (limits.MAX_BODY_BYTES, http.max_body_bytes),
        ):
            limit.check(number)
        if workers.addresses is not None and len(workers.addresses) != self.pool.size:
            raise ConfigError(
                f"{len(workers.addresses)} worker addresses for a pool of {self.pool.size} "
                f"instances ({self.pool}).",
                "give one HOST:PORT per instance, in pool order, or --workers local.",
            )
        for name, number, default in (  # settings with no command-line range
            (
                "timeout_p99_multiple",
                dispatch.timeout_p99_multiple,
                DispatchSettings.default("timeout_p99_multiple"),
            ),
            (
                "connect_timeout_s",
                workers.connect_timeout_s,
                PoolSettings.default("connect_timeout_s"),
            ),
            ("plan_refresh_s", self.plan_refresh_s, self.default("plan_refresh_s")),
        ):
            if not (math.isfinite(number) and number > 0):
                raise ConfigError(
                    f"--{name.replace('_', '-')} {number!r} is not a positive number.",
                    f"pass a positive number (default {default}).",
                )
        if not 0.0 < dispatch.overhead_quantile < 1.0:
            raise ConfigError(
                f"overhead quantile {dispatch.overhead_quantile!r} is not in (0, 1).",
                "use e.g. 0.95.",
            )
        if http.api_token is not None and not http.api_token:
            raise ConfigError("--api-token is empty.", "pass a non-empty token or omit it.")
        self._check_ray()

    def _check_ray(self) -> None:
        ray, backend = self.ray, self.workers.backend
        RAY_PLACEMENTS.check(ray.placement)
        if backend != "ray":
            if ray.address is not None:
                raise ConfigError(
                    f"--address {ray.address!r} is a Ray cluster, but the backend is {backend!r}.",
                    "add --backend ray, or drop --address.",
                )
            return
        if self.workers.addresses is not None:
            raise ConfigError(
                "--workers lists worker addresses, but the Ray backend starts its own workers.",
                "drop --workers, or use --backend local with it.",
            )
        if ray.address is None and ray.placement == "label" and len(self.pool.types) > 1:
            raise ConfigError(
                f"a local Ray instance is one node and carries one {TYPE_LABEL} label, but pool "
                f"{self.pool} has {len(self.pool.types)} types.",
                "use --ray-placement resource (the default) or join a cluster with --address.",
            )
        if not (math.isfinite(ray.start_timeout_s) and ray.start_timeout_s > 0):
            raise ConfigError(
                f"Ray start timeout {ray.start_timeout_s!r} is not a positive number.",
                f"pass a number of seconds > 0 (default {RaySettings.default('start_timeout_s')}).",
            )
        if (
            ray.max_restarts < -1
            or min(ray.instance_cpus, ray.instance_gpus) < 0
            or ray.local_slots < 1
        ):
            raise ConfigError(
                f"Ray settings out of range (max restarts {ray.max_restarts}, instance "
                f"CPUs {ray.instance_cpus}, GPUs {ray.instance_gpus}, local slots "
                f"{ray.local_slots}).",
                "use max restarts >= -1 (-1: no limit), CPUs and GPUs >= 0, local slots >= 1.",
            )

    def instance_spec(self, instance_type: str, j: int) -> WorkerSpec:
        """What instance ``j`` runs (its worker's seed follows from the router's)."""
        workers = self.workers
        return WorkerSpec(
            instance_type=instance_type,
            model=self.model,
            mode=workers.mode,
            handler=workers.handler,
            time_scale=self.dispatch.time_scale,
            seed=self.seed * 1000 + j,
            profiles_path=workers.profiles_path,
            transport=workers.transport,
            cpus=workers.cpus,
        )

    def pool_request(self, profiles: ModelProfiles) -> PoolRequest:
        """What the pool backend is built from; ``profiles`` are the router's."""
        return PoolRequest(self.model, self.pool, profiles, self.workers, self.ray)
