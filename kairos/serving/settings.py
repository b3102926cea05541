"""The settings each part of the router takes, as values: every default declared once.

``RouterConfig`` (serving/router/config.py) is made of these and checks them; each part gets
only its own: the front end and its HTTP server ``HttpSettings``, the dispatcher
``DispatchSettings``, a pool backend a ``PoolRequest`` (``PoolSettings``, and ``RaySettings``,
which only the Ray backend reads). They sit below every part that reads them and import none
of them, so the parts and the config that composes them never import each other.

A setting that ``kairos serve`` sets names its option here (``setting(default, "--flag")``):
the command declares each option from ``option`` and ``default``, and builds the settings
from what it parsed with ``from_options``, with no copy per field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any, Self

from kairos.catalog import Pool
from kairos.profiles import ModelProfiles
from kairos.protocol.api import DEFAULT_HOST, DEFAULT_PORT

OPTION = "option"  # the field metadata key that holds a setting's command-line option


def setting(default: Any, option: str | None = None) -> Any:
    """A settings field: its default, and the command-line option that sets it (if any)."""
    return field(default=default, metadata={OPTION: option} if option else {})


class Settings:
    """What every settings value can say about its fields (a mixin of frozen dataclasses)."""

    @classmethod
    def _field(cls, name: str) -> Field[Any]:
        found = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        if name not in found:
            raise KeyError(f"{cls.__name__} has no setting {name!r}")
        return found[name]

    @classmethod
    def default(cls, name: str) -> Any:
        """The declared default of setting ``name`` (the CLI shows and uses it)."""
        return cls._field(name).default

    @classmethod
    def option(cls, name: str) -> str:
        """The command-line option of setting ``name``."""
        return str(cls._field(name).metadata[OPTION])

    @classmethod
    def options(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        """``field name -> value`` for every setting that has an option, read from ``given``
        (option -> parsed value); a setting with an option the command lacks is a bug."""
        return {
            f.name: given[f.metadata[OPTION]]
            for f in fields(cls)  # type: ignore[arg-type]
            if OPTION in f.metadata
        }

    @classmethod
    def from_options(cls, given: Mapping[str, Any]) -> Self:
        """These settings as the command line gave them; the rest keep their defaults."""
        return cls(**cls.options(given))


@dataclass(frozen=True)
class HttpSettings(Settings):
    """The front end and its HTTP server."""

    host: str = setting(DEFAULT_HOST, "--host")
    port: int = setting(DEFAULT_PORT, "--port")
    api_token: str | None = setting(None, "--api-token")
    max_body_bytes: int = setting(16 * 1024 * 1024, "--max-body-bytes")
    max_queue: int = setting(1000, "--max-queue")


@dataclass(frozen=True)
class DispatchSettings(Settings):
    """The dispatcher: its clock, hang timeouts, retries, overhead estimate, traffic window
    and drain."""

    time_scale: float = setting(1.0, "--time-scale")
    # A query is failed (502) once it may have caused this many worker failures in a row.
    max_attempts: int = setting(3, "--max-attempts")
    timeout_floor_s: float = setting(2.0, "--timeout-floor-s")
    # Hang timeout per query: the floor plus this multiple of the profiled p99 service time.
    timeout_p99_multiple: float = 5.0
    # Tell the policy the measured transport delay: state.overhead_s = factor x this quantile
    # of the recent worker round-trip overhead (factor 3: the client's HTTP legs, which the
    # router cannot time, behave like the worker legs it can). 0 turns it off.
    overhead_factor: float = setting(3.0, "--overhead-factor")
    overhead_quantile: float = 0.95
    # The router keeps the arrival rate and batch mix of this many recent seconds (profile
    # time; GET /v2/traffic, /metrics).
    traffic_window_s: float = setting(60.0, "--traffic-window-s")
    # Keep one query waiting at a model worker: an instance whose query has run its
    # estimated (mean) service time and is not answered yet is released to the policy while
    # others queue, and the next query goes out behind it (docs/runtime.md, "Keeping one
    # query waiting at the worker").
    pipeline: bool = setting(False, "--pipeline")
    drain_timeout_s: float = setting(30.0, "--drain-timeout-s")


@dataclass(frozen=True)
class PoolSettings(Settings):
    """The worker pool: which backend, and what its workers run."""

    backend: str = setting("local", "--backend")
    # Remote workers' addresses, in pool order; None starts the workers here.
    addresses: tuple[str, ...] | None = setting(None, "--workers")
    mode: str = setting("replay", "--mode")
    # Local replay workers: a process per instance type, or per instance.
    hosting: str = setting("type", "--worker-hosting")
    cpus: tuple[int, ...] = setting((), "--worker-cpus")  # pin local workers to these cores
    transport: str = setting("tcp", "--transport")
    handler: str | None = setting(None, "--handler")
    profiles_path: str | None = setting(None, "--profiles")
    connect_timeout_s: float = 10.0


@dataclass(frozen=True)
class RaySettings(Settings):
    """The Ray backend (--backend ray; docs/ray.md) and the detached router."""

    # A Ray cluster's HOST:PORT (or auto); None starts a local Ray instance here.
    address: str | None = setting(None, "--address")
    # How an instance finds a node of its type: resource | label.
    placement: str = setting("resource", "--ray-placement")
    namespace: str = "kairos"
    router_name: str = "kairos-router"  # the detached router actor (--detach)
    max_restarts: int = -1  # Ray restarts a dead actor this often (-1: without limit)
    instance_cpus: float = 0.0  # CPUs an instance's actor reserves on its node
    instance_gpus: float = 0.0  # GPUs it reserves (Ray then sets CUDA_VISIBLE_DEVICES)
    start_timeout_s: float = 60.0  # serve without instances not placed by then; they join later
    local_slots: int = 1024  # instances of each type a local Ray instance (no address) offers


@dataclass(frozen=True)
class PoolRequest:
    """What a pool backend is built from: the model and pool served, the model's profiles
    (the router's own: a backend that ships profiles to its workers reads no file), and the
    pool's settings; ``ray`` is read by the Ray backend only."""

    model: str
    pool: Pool
    profiles: ModelProfiles
    settings: PoolSettings
    ray: RaySettings
