"""Cells' routers as Ray actors (``kairos serve --cells N --backend ray``).

Each cell's router is a ``CellRouterHost`` actor: the ordinary router (``RouterHost``: the
same HTTP API, the Ray worker pool for the cell's instances) bound to its node's address on a
port it picks, so the balancer, which stays on the machine that runs ``kairos serve``, reaches
it across the cluster. The actors are the cell set's own (not detached): they go when the
cell set goes, and their instances' actors go with them.

Where a router goes (``router_placement``): on a router node when the cluster has one, a node
offering the resource ``kairos/router`` (one unit per router it may host) or, failing that,
carrying the label ``kairos.io/node-role=router``; otherwise on the head node, where the
detached router goes (``kairos serve --detach``).

A router actor that dies (killed, its node lost) is not restarted by Ray (``max_restarts``
0): the cell set's watcher sees its ``watch`` call fail and starts a new actor, which may land
on another node or port; the cell set then moves the cell's server in the balancer
(``set server ... addr``). The actor is named ``<router_name>-cellK`` in the namespace, so
``ray list actors`` shows the cells and an operator can find one by name.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from kairos.errors import ConfigError, KairosError, RuntimeServiceError
from kairos.scenario import Scenario
from kairos.serving.cells.cell import Cell
from kairos.serving.cells.hosts import HostsRequest
from kairos.serving.ray.placement import ROUTER_LABEL, ROUTER_RESOURCE, TYPE_LABEL, type_resource
from kairos.serving.ray.router import HEAD_RESOURCE, RouterHost
from kairos.serving.ray.session import connect, error_line, import_ray, normal_priority
from kairos.serving.router.config import RouterConfig
from kairos.serving.router.traffic import HeadroomFactory

NAME_RETRY_S = 0.05  # a killed actor's name is free again once Ray has marked it dead


class CellRouterHost(RouterHost):
    """The body of one cell's router actor: ``RouterHost`` on its node's address."""

    def __init__(
        self, cfg: RouterConfig, scenario: Scenario, headroom: HeadroomFactory | None = None
    ) -> None:
        normal_priority()
        ip = import_ray().util.get_node_ip_address()
        # The node's address, not every interface: the balancer reaches it there, and nothing
        # else needs to.
        super().__init__(replace(cfg, http=replace(cfg.http, host=ip, port=0)), scenario, headroom)

    async def watch(self) -> None:
        """Returns when the router stops on its own; fails when the actor dies."""
        await asyncio.to_thread(self._thread.join)


def router_placement(
    resources: Mapping[str, float], node_labels: Iterable[Mapping[str, str]]
) -> dict[str, Any]:
    """The actor options that place a router: from the cluster's total ``resources`` and the
    labels of its live nodes (see the module docstring)."""
    if resources.get(ROUTER_RESOURCE, 0.0) > 0.0:
        return {"resources": {ROUTER_RESOURCE: 1.0}}
    key, value = ROUTER_LABEL
    if any(labels.get(key) == value for labels in node_labels):
        return {"label_selector": {key: value}}
    return {"resources": {HEAD_RESOURCE: 0.001}}


class RayRouters:
    """One router actor per cell (see the module docstring)."""

    def __init__(self, request: HostsRequest) -> None:
        self.request = request
        ray_cfg, pool = request.cfg.ray, request.cfg.pool
        resources: dict[str, float] = {}
        labels: dict[str, str] = {}
        if ray_cfg.address is None:  # one local instance for every cell: it offers the types
            types = {*request.scenario.profiles.instance_types, *pool.types}
            resources = {type_resource(t): float(ray_cfg.local_slots) for t in types}
            if ray_cfg.placement == "label":
                labels = {TYPE_LABEL: pool.types[0]}
        # Joined here, before the cell set installs its signal handlers (ray.init installs
        # its own).
        self._owns_ray = connect(
            ray_cfg.address, ray_cfg.namespace, resources=resources, labels=labels
        )
        ray = import_ray()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        self.placement = router_placement(
            ray.cluster_resources(), [n.get("Labels") or {} for n in nodes]
        )
        self._class = ray.remote(CellRouterHost)

    def actor_name(self, cell: Cell) -> str:
        return f"{self.request.cfg.ray.router_name}-{cell.name}"

    async def launch(self, cell: Cell, cfg: RouterConfig) -> None:
        ray = import_ray()
        ray_cfg = self.request.cfg.ray
        timeout_s = self.request.settings.router_ready_timeout_s
        deadline = time.monotonic() + timeout_s
        name = self.actor_name(cell)
        options = {
            "name": name,
            "namespace": ray_cfg.namespace,
            "max_restarts": 0,  # the cell set starts a new one (it may move: see above)
            "num_cpus": 0,
            **self.placement,
        }
        # Ray 2.49 raises a plain ValueError for a taken name; later versions a subclass.
        taken = getattr(ray.exceptions, "ActorAlreadyExistsError", ValueError)
        while True:
            try:
                actor = self._class.options(**options).remote(
                    cfg, self.request.scenario, self.request.headroom
                )
                break
            except taken:
                if cell.router is None or time.monotonic() > deadline:
                    raise ConfigError(
                        f"a Ray actor named {name!r} already runs in namespace "
                        f"{ray_cfg.namespace!r} (another kairos serve --cells?).",
                        "stop that service first (Ctrl-C in its kairos serve), then this one.",
                    ) from None
                await asyncio.sleep(NAME_RETRY_S)  # ours, killed: Ray is releasing its name
        cell.router = actor
        try:
            info = await self._ready(cell, actor, deadline)
        except BaseException:
            ray.kill(actor, no_restart=True)  # a router that never served: its retry is anew
            raise
        where = urlsplit(str(info["url"]))
        cell.host, cell.port = str(where.hostname), int(where.port or 0)
        cell.pid, cell.node = int(info["pid"]), str(info["node"])

    async def _ready(self, cell: Cell, actor: Any, deadline: float) -> dict[str, Any]:
        """The new router actor's ``info`` once it answers ready (or an error naming why)."""
        ray = import_ray()
        timeout_s = self.request.settings.router_ready_timeout_s
        try:
            info: dict[str, Any] = await asyncio.wait_for(
                actor.info.remote(_left(deadline)), _left(deadline) + 1.0
            )
        except TimeoutError:
            raise RuntimeServiceError(
                f"{cell.name}'s router actor was not placed and ready within {timeout_s:g} s "
                f"(placement {self.placement}).",
                "check the cluster has a router node (resource kairos/router) or room on the "
                "head node, and that the cell's instance types have nodes ('ray status').",
            ) from None
        except ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, KairosError):  # the router's own error
                raise cause from None
            raise RuntimeServiceError(
                f"{cell.name}'s router actor failed to start: {error_line(exc)}",
                "fix what it names (its log: 'ray logs' on its node).",
            ) from None
        if not info["ready"]:
            raise RuntimeServiceError(
                f"{cell.name}'s router was not ready within {timeout_s:g} s.",
                "check its instances are placed ('ray status'; kairos status lists them).",
            )
        return info

    async def exited(self, cell: Cell) -> str:
        ray = import_ray()
        try:
            await cell.router.watch.remote()
        except ray.exceptions.RayError as exc:
            return f"actor died ({type(exc).__name__})"
        # The router stopped on its own (its thread ended): the actor goes too.
        ray.kill(cell.router, no_restart=True)
        return "stopped"

    async def stop(self, cell: Cell) -> None:
        ray = import_ray()
        actor = cell.router
        if actor is None:
            return
        try:
            grace_s = self.request.cfg.dispatch.drain_timeout_s + 10.0
            await asyncio.wait_for(actor.stop.remote(), grace_s)
        except (TimeoutError, ray.exceptions.RayError):
            pass  # gone already, or stuck: killed below
        ray.kill(actor, no_restart=True)

    async def close(self) -> None:
        if self._owns_ray:
            import_ray().shutdown()


def _left(deadline: float) -> float:
    return max(0.01, deadline - time.monotonic())
