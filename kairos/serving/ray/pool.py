"""The Ray worker pool (``kairos serve --backend ray``): each instance is a Ray actor on a node
of its instance type, and the router talks to it over the usual worker link.

Placement (``RaySettings.placement``, see docs/ray.md and placement.py):

* ``resource`` (the default): a node of type T offers the custom resource ``kairos/T``
  (one unit per instance it may host, 1 on a real cluster); an instance of type T asks for
  one unit. One mechanism both picks the type and caps the instances per node, the Ray
  autoscaler understands it, and one local node can offer every type at once.
* ``label``: a node of type T carries the label ``kairos.io/instance-type=T`` and an instance
  asks for it with a label selector (Ray 2.49 or later). How many land on one node is then
  up to their CPU requests (``RaySettings.instance_cpus``).

The actor (``InstanceHost``) runs the ordinary worker (replay, model mode or a user handler)
in its own thread and event loop and binds the node's address; the router connects straight
to it, so no Ray call sits on a query's path. Ray serves only the control path:

* start: create the actors, ask each for its address (``info``) once it is placed;
* death: a long-running ``watch`` call on each actor fails when the actor (or its node) dies,
  and the pool marks the instance down at once (a dead connection does the same sooner);
* recovery (``_relaunch``): ``info`` waits while Ray restarts the actor (``max_restarts``) or
  until it can place it again (a lost node); an actor dead for good is created anew; a
  worker whose process is still the one that failed (it hung) is killed so Ray restarts it;
* resize and shutdown kill the actors of removed instances (no restart).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from kairos.errors import RuntimeServiceError
from kairos.profiles import LatencyProfile
from kairos.serving.pool.base import LinkedPool
from kairos.serving.ray.placement import RAY_PLACEMENTS, TYPE_LABEL, type_resource
from kairos.serving.ray.session import connect, error_line, import_ray, normal_priority
from kairos.serving.settings import PoolRequest
from kairos.serving.worker.launch import WorkerSpec
from kairos.serving.worker.service import HostedInstance

__all__ = ["TYPE_LABEL", "InstanceHost", "RayPool", "type_resource"]

RESTART_POLL_S = 0.1


def _host_address(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class InstanceHost:
    """The body of one instance's Ray actor: the worker in a thread of its own.

    ``info`` answers on the actor's event loop, not the worker's, so it answers while the
    worker serves (or hangs); ``watch`` never returns while the actor lives.
    """

    def __init__(self, spec: WorkerSpec, profile: LatencyProfile | None) -> None:
        normal_priority()  # before the worker thread starts: it inherits it
        ray = import_ray()
        self._node = ray.get_runtime_context().get_node_id()
        ip = ray.util.get_node_ip_address()
        # The worker runs in this actor's process, on the node's address; the spec's process
        # settings (cores, local type, profiles file) are the supervisor's, not the actor's.
        self._worker = HostedInstance(replace(spec, host=ip, port=0), profile)
        self._worker.start()
        self._worker.bound.wait()
        if self._worker.error is not None or self._worker.port is None:
            raise self._worker.error or RuntimeError("the worker did not bind a port")
        self._address = _host_address(ip, self._worker.port)

    async def info(self) -> dict[str, Any]:
        return {
            "address": self._address,
            "node": self._node,
            "pid": os.getpid(),
            "serving": self._worker.is_alive(),
        }

    async def watch(self) -> None:
        await asyncio.Event().wait()


class RayPool(LinkedPool):
    """Instances are Ray actors; see the module docstring. A replay instance gets its type's
    profile from the router's (``request.profiles``), shipped with its actor."""

    def __init__(self, request: PoolRequest) -> None:
        super().__init__(request.settings.connect_timeout_s)
        self._request = request
        self._cfg = request.ray
        self._placement = RAY_PLACEMENTS.get(request.ray.placement)
        self._profiles = request.profiles
        self._actors: list[Any] = []  # an ActorHandle per instance; None once removed
        self._watches: dict[int, asyncio.Task[None]] = {}
        self._host_class: Any = None
        self._owns_ray = False
        # Join Ray now, before the router installs its signal handlers: ray.init installs
        # its own, which would otherwise replace the router's drain-on-SIGTERM.
        self._ray()

    # --- Ray ----------------------------------------------------------------------------------

    def _ray(self) -> Any:
        ray = import_ray()
        if self._host_class is None:
            cfg, pool = self._cfg, self._request.pool
            resources: dict[str, float] = {}
            labels: dict[str, str] = {}
            if cfg.address is None:  # a local instance declares the types itself
                types = {*self._profiles.instance_types, *pool.types}
                resources = {type_resource(t): float(cfg.local_slots) for t in types}
                if cfg.placement == "label":
                    labels = {TYPE_LABEL: pool.types[0]}
            self._owns_ray = connect(cfg.address, cfg.namespace, resources=resources, labels=labels)
            self._host_class = ray.remote(InstanceHost)
        return ray

    def _create(self, spec: WorkerSpec) -> Any:
        cfg = self._cfg
        options = {
            "max_restarts": cfg.max_restarts,
            "num_cpus": cfg.instance_cpus,
            "num_gpus": cfg.instance_gpus,
            **self._placement(spec.instance_type),
        }
        runs_model = spec.mode == "model" or spec.handler is not None
        # Only a replay worker reads its type's profile (a model needs none, nor its type one).
        profile = None if runs_model else self._profiles.get(spec.instance_type)
        return self._host_class.options(**options).remote(spec, profile)

    def _where(self, j: int) -> str:
        t = self.slots[j].spec.instance_type
        if self._cfg.placement == "label":
            return f"no node carries the label {TYPE_LABEL}={t}"
        return f"no node offers a free unit of the resource {type_resource(t)}"

    # --- where workers are (LinkedPool) -------------------------------------------------------

    async def _launch(self, first: int, specs: list[WorkerSpec]) -> Sequence[str | None]:
        self._ray()
        self._actors += [self._create(spec) for spec in specs]
        ids = range(first, first + len(specs))
        return await asyncio.gather(*(self._first_address(j) for j in ids))

    async def _first_address(self, j: int) -> str | None:
        ray = self._ray()
        timeout_s = self._cfg.start_timeout_s
        try:
            info = await asyncio.wait_for(self._actors[j].info.remote(), timeout_s)
        except TimeoutError:
            self._log(
                f"instance {j} is not placed within {timeout_s:g} s ({self._where(j)}); it "
                "joins when Ray can place it"
            )
            return None
        except ray.exceptions.RayActorError as exc:
            if not exc.actor_init_failed:
                return None  # died on the way (its node, say): recovery brings it back
            raise RuntimeServiceError(
                f"instance {j} ({self.slots[j].spec.instance_type}) failed to start on Ray: "
                f"{error_line(exc)}",
                "fix what it names; a --handler module must be importable on every node.",
            ) from None
        return self._located(j, info)

    async def _relaunch(self, j: int, stale_pid: int | None) -> tuple[str, int | None]:
        ray = self._ray()
        self._unwatch(j)
        try:
            # Waits while Ray restarts the actor, or until it can place it again.
            info = await self._actor(j).info.remote()
        except ray.exceptions.ActorDiedError:
            self._actor(j)  # not removed meanwhile (its actor was killed on purpose then)
            self._log(f"instance {j}'s actor is dead for good; creating a new one")
            self._actors[j] = self._create(self.slots[j].spec)
            info = await self._actor(j).info.remote()
        if stale_pid is not None and info["pid"] == stale_pid:
            # The process that failed still runs (it hung, or its worker thread died).
            ray.kill(self._actor(j), no_restart=False)
            info = await self._restarted(j, stale_pid)
        return self._located(j, info), info["pid"]

    def _actor(self, j: int) -> Any:
        actor = self._actors[j]
        if actor is None:  # recovery gives up: the instance was removed (LinkedPool stops it)
            raise RuntimeServiceError(f"instance {j} was removed.", "nothing to do.")
        return actor

    async def _restarted(self, j: int, stale_pid: int) -> dict[str, Any]:
        ray = self._ray()
        deadline = time.monotonic() + self._cfg.start_timeout_s
        while time.monotonic() < deadline:
            try:
                info: dict[str, Any] = await self._actor(j).info.remote()
                if info["pid"] != stale_pid:
                    return info
            except ray.exceptions.ActorUnavailableError:
                pass  # restarting
            await asyncio.sleep(RESTART_POLL_S)
        raise RuntimeServiceError(
            f"instance {j}'s actor did not restart within {self._cfg.start_timeout_s:g} s.",
            "check the cluster ('ray status'); recovery keeps trying.",
        )

    def _located(self, j: int, info: dict[str, Any]) -> str:
        self.slots[j].node = str(info["node"])
        self._watch(j)
        return str(info["address"])

    def _watch(self, j: int) -> None:
        """Report instance ``j`` down when its actor dies (an idle instance included)."""
        self._unwatch(j)
        epoch = self.slots[j].epoch
        call = self._actor(j).watch.remote()

        async def watch() -> None:
            try:
                await call
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(j, epoch, f"its Ray actor died ({type(exc).__name__})", True)

        self._watches[j] = asyncio.ensure_future(watch())

    def _unwatch(self, j: int) -> None:
        task = self._watches.pop(j, None)
        if task is not None:
            task.cancel()

    async def _retire(self, instances: list[int]) -> None:
        ray = self._ray()
        for j in instances:
            self._unwatch(j)
            actor, self._actors[j] = self._actors[j], None
            if actor is not None:
                ray.kill(actor, no_restart=True)

    async def _shutdown(self) -> None:
        if self._host_class is None:
            return
        await self._retire([j for j, a in enumerate(self._actors) if a is not None])
        if self._owns_ray:
            self._ray().shutdown()
