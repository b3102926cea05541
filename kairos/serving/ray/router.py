"""The router inside the Ray cluster (``kairos serve --backend ray --address A --detach``).

``RouterHost`` is the body of a named, detached actor placed on the head node (Ray gives the
head the resource ``node:__internal_head__``). It runs the ordinary router (``run_router``:
the same HTTP API, the Ray worker pool) in a thread with its own event loop, so the actor's
own loop stays free to answer ``info``, ``request`` and ``stop``. Being detached, it outlives
the ``kairos serve`` process that created it; its instances' actors are its own, so they go
when it goes. ``kairos status``, ``kairos scale`` and ``kairos stop`` find it by name.

``request`` makes an HTTP call to the router from the head node itself, so the admin calls
work with ``--address`` even where the router listens on the head's loopback only.

The scenario travels with the actor, profiles included, and the Ray pool takes its instances'
profiles from it: the caller's ``--profiles`` file, which the head node lacks, is not needed
there.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

from kairos.aio import run_event_loop
from kairos.client.admin import http_request
from kairos.errors import ConfigError, KairosError, RuntimeServiceError
from kairos.scenario import Scenario
from kairos.serving.ray.session import connect, error_line, import_ray, normal_priority
from kairos.serving.router.config import RouterConfig
from kairos.serving.router.router import run_router
from kairos.serving.router.traffic import HeadroomFactory

HEAD_RESOURCE = "node:__internal_head__"
READY_POLL_S = 0.2
STOP_GRACE_S = 60.0


class RouterHost:
    """The body of the detached router actor (see the module docstring)."""

    def __init__(
        self,
        cfg: RouterConfig,
        scenario: Scenario,
        headroom: HeadroomFactory | None = None,
    ) -> None:
        normal_priority()
        self._cfg = cfg
        self._scenario = scenario
        self._headroom = headroom
        self._url = ""
        self._error: BaseException | None = None
        self._listening = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="kairos-router", daemon=True)
        self._thread.start()
        self._listening.wait()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            run_event_loop(self._main())
        except BaseException as exc:  # reported by __init__ or info
            self._error = exc
        finally:
            self._listening.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await run_router(
            self._cfg, self._scenario, self._on_listening, self._stop, headroom=self._headroom
        )

    def _on_listening(self, url: str) -> None:
        ray = import_ray()
        ip = ray.util.get_node_ip_address()
        # A router bound to every interface is reached at the head's address.
        for anywhere in ("0.0.0.0", "[::]"):
            url = url.replace(f"//{anywhere}:", f"//{ip}:")
        self._url = url
        self._listening.set()

    async def info(self, wait_ready_s: float = 0.0) -> dict[str, Any]:
        """Where the router is; with ``wait_ready_s``, first wait (that long at most) until
        it is ready (a worker is up)."""
        if self._error is not None:
            raise self._error
        ready = await asyncio.to_thread(self._wait_ready, wait_ready_s)
        ray = import_ray()
        return {
            "name": self._cfg.ray.router_name,
            "url": self._url,
            "metrics_url": f"{self._url}/metrics",
            "node": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "model": self._cfg.model,
            "policy": self._cfg.policy,
            "ready": ready,
        }

    def _wait_ready(self, wait_s: float) -> bool:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                status, _ = self._call("/v2/health/ready", None, 2.0)
            except OSError:
                status = 0
            if status == 200 or time.monotonic() >= deadline or not self._thread.is_alive():
                return status == 200
            threading.Event().wait(READY_POLL_S)

    def _call(self, path: str, body: bytes | None, timeout_s: float) -> tuple[int, str]:
        return http_request(self._url + path, body, self._cfg.http.api_token, timeout_s)

    async def request(
        self, path: str, body: bytes | None = None, timeout_s: float = 300.0
    ) -> tuple[int, str]:
        """An HTTP call to the router from this node (GET, or POST with ``body``)."""
        return await asyncio.to_thread(self._call, path, body, timeout_s)

    async def stop(self) -> None:
        """Drain accepted queries, stop the instances and the router."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        await asyncio.to_thread(self._thread.join, STOP_GRACE_S)


def start_detached(
    cfg: RouterConfig, scenario: Scenario, headroom: HeadroomFactory | None = None
) -> dict[str, Any]:
    """Start the router as a detached actor on the head node of ``cfg.ray.address``; return
    its ``info`` once it is ready (or ``cfg.ray.start_timeout_s`` passed)."""
    ray_cfg = cfg.ray
    if cfg.workers.backend != "ray" or ray_cfg.address is None:
        raise ConfigError(
            "--detach runs the router inside a Ray cluster, so it needs --backend ray and "
            "--address.",
            "start the cluster (ray start --head, or ray up) and pass --backend ray --address "
            "HOST:6379.",
        )
    cfg.check()
    ray = import_ray()
    connect(ray_cfg.address, ray_cfg.namespace)
    try:
        running = ray.get_actor(ray_cfg.router_name, namespace=ray_cfg.namespace)
    except ValueError:
        running = None
    if running is not None:
        url = ray.get(running.info.remote()).get("url", "?")
        raise ConfigError(
            f"a router named {ray_cfg.router_name!r} already runs in this cluster ({url}).",
            "stop it first (kairos stop --address ...), or scale it (kairos scale).",
        )
    host = (
        ray.remote(RouterHost)
        .options(
            name=ray_cfg.router_name,
            namespace=ray_cfg.namespace,
            lifetime="detached",
            max_restarts=ray_cfg.max_restarts,
            num_cpus=0,
            resources={HEAD_RESOURCE: 0.001},
        )
        .remote(cfg, scenario, headroom)
    )
    try:
        info: dict[str, Any] = ray.get(host.info.remote(ray_cfg.start_timeout_s))
    except ray.exceptions.RayError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, KairosError):  # the router's own error (a port in use, say)
            raise cause from None
        raise RuntimeServiceError(
            f"the detached router failed to start: {error_line(exc)}",
            "fix what it names (its log: 'ray logs' on the head node).",
        ) from None
    return info


def find_router(address: str | None, namespace: str, name: str) -> Any:
    """The handle of the detached router ``name`` in the cluster at ``address``."""
    ray = import_ray()
    connect(address or "auto", namespace)
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        raise RuntimeServiceError(
            f"no router named {name!r} runs in namespace {namespace!r} of this Ray cluster.",
            "start one with kairos serve --backend ray --address ... --detach, or pass --name.",
        ) from None


def router_info(handle: Any) -> dict[str, Any]:
    info: dict[str, Any] = import_ray().get(handle.info.remote())
    return info


def router_request(handle: Any, path: str, body: bytes | None = None) -> tuple[int, str]:
    status, text = import_ray().get(handle.request.remote(path, body))
    return int(status), str(text)


def stop_detached(handle: Any) -> None:
    """Drain and stop the detached router, then remove its actor."""
    ray = import_ray()
    ray.get(handle.stop.remote())
    ray.kill(handle, no_restart=True)
