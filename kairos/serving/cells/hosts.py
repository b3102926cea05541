"""Where a cell's router runs: the seam between the cell set and its routers.

The cell set (``cellset.py``) decides what each cell serves, weighs the cells in the balancer,
watches them and restarts a router that dies; a ``RouterHosts`` starts, watches and stops one
router per cell somewhere. ``ROUTER_HOSTS`` holds them by the pool backend's name
(``--backend``), since where the routers run follows where their workers do:

* ``local``: one router process per cell on this machine (``child.py``), on a loopback port,
  with a warm spare process (below); its workers are local processes it owns.
* ``ray``: one Ray actor per cell (``ray_hosts.py``), placed on a router node of the cluster,
  on that node's address; its workers are Ray actors on nodes of their types.

A host sets each cell's address (``host``, ``port``), ``pid`` and ``node`` as its router
comes up; the cell set gives that address to the balancer, and updates the balancer when a
restarted router comes back elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Protocol

from kairos.client.admin import http_request
from kairos.errors import RuntimeServiceError
from kairos.protocol.api import HEALTH_READY_PATH, LISTEN_LINE
from kairos.registry import Registry
from kairos.scenario import Scenario
from kairos.serving.cells.balancer import die_with_parent
from kairos.serving.cells.cell import Cell
from kairos.serving.cells.config import CellSettings
from kairos.serving.router.config import RouterConfig
from kairos.serving.router.traffic import HeadroomFactory

LOOPBACK = "127.0.0.1"  # a local router is reached by the balancer on this machine only


@dataclass(frozen=True)
class HostsRequest:
    """What a ``RouterHosts`` is built from: the routers' shared config (each cell's pool and
    seed are set per cell), the scenario, the cell set's settings and the headroom factory;
    ``closing`` says when the cell set is shutting down (no new spare then)."""

    cfg: RouterConfig
    scenario: Scenario
    settings: CellSettings
    headroom: HeadroomFactory | None
    closing: Callable[[], bool]


class RouterHosts(Protocol):
    """Starts, watches and stops the routers of one cell set, one per cell."""

    async def launch(self, cell: Cell, cfg: RouterConfig) -> None:
        """Start ``cell``'s router on ``cfg`` (the cell's pool and seed); set the cell's
        ``host``, ``port``, ``pid`` and ``node``; return once the router answers ready."""
        ...

    async def exited(self, cell: Cell) -> str:
        """Wait until ``cell``'s router is gone (on its own, or stopped); say how."""
        ...

    async def stop(self, cell: Cell) -> None:
        """Drain ``cell``'s router (it answers its queue) and stop it with its workers."""
        ...

    async def close(self) -> None:
        """After every router stopped: release what the hosts hold (a spare, a Ray session)."""
        ...


class LocalRouters:
    """One router process per cell on this machine (see the module docstring)."""

    def __init__(self, request: HostsRequest) -> None:
        self.request = request
        self._spare: asyncio.subprocess.Process | None = None  # settings.warm_spare

    async def launch(self, cell: Cell, cfg: RouterConfig) -> None:
        request = self.request
        # The same port across restarts: the balancer's configuration need not change.
        cfg = replace(cfg, http=replace(cfg.http, host=LOOPBACK, port=cell.port))
        proc, self._spare = self._spare, None
        if proc is None or proc.returncode is not None:
            proc = await self._spawn()
        cell.router, cell.pid, cell.host, cell.node = proc, proc.pid, LOOPBACK, None
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(pickle.dumps((cfg, request.scenario)))
        await proc.stdin.drain()
        proc.stdin.close()
        timeout_s = request.settings.router_ready_timeout_s
        deadline = time.monotonic() + timeout_s
        cell.port = await _listening_port(proc, cell.name, deadline)
        asyncio.ensure_future(_discard(proc.stdout))  # its later lines; a full pipe would stall it
        url = f"http://{LOOPBACK}:{cell.port}{HEALTH_READY_PATH}"
        await _until_ready(proc, cell.name, url, deadline, timeout_s)
        if request.settings.warm_spare and self._spare is None and not request.closing():
            self._spare = await self._spawn()

    async def _spawn(self) -> asyncio.subprocess.Process:
        """A router process waiting for its cell on stdin (child.py), given the headroom
        factory at once so that it imports everything it will run while it waits."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kairos.serving.cells.child",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            preexec_fn=die_with_parent,
        )
        assert proc.stdin is not None
        proc.stdin.write(pickle.dumps(self.request.headroom))
        await proc.stdin.drain()
        return proc

    async def exited(self, cell: Cell) -> str:
        proc = cell.router
        assert isinstance(proc, asyncio.subprocess.Process)
        return f"exited with status {await proc.wait()}"

    async def stop(self, cell: Cell) -> None:
        proc = cell.router
        if not isinstance(proc, asyncio.subprocess.Process) or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)  # the router answers its queue, then stops its workers
        try:
            await asyncio.wait_for(proc.wait(), self.request.cfg.dispatch.drain_timeout_s + 10.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def close(self) -> None:
        spare, self._spare = self._spare, None
        if spare is not None and spare.stdin is not None:
            spare.stdin.close()  # nothing to serve: it exits
            await spare.wait()


def _left(deadline: float) -> float:
    return max(0.01, deadline - time.monotonic())


async def _listening_port(proc: asyncio.subprocess.Process, name: str, deadline: float) -> int:
    """The port a starting router prints on its listen line."""
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), _left(deadline))).decode()
        if not line:
            raise RuntimeServiceError(
                f"{name}'s router exited with status {await proc.wait()} before "
                "listening (its error is above).",
                "run kairos serve with the same options and without --cells to see it.",
            )
        if line.startswith(LISTEN_LINE):
            return int(line.split()[4].rsplit(":", 1)[1])


async def _until_ready(
    proc: asyncio.subprocess.Process, name: str, url: str, deadline: float, timeout_s: float
) -> None:
    """Return once the router answers ready at ``url``; raise if it exits or times out."""
    get = partial(http_request, url, timeout_s=2.0)
    loop = asyncio.get_running_loop()
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeServiceError(
                f"{name}'s router exited with status {proc.returncode} before it was ready.",
                "see its error above; check the cell's workers start.",
            )
        with contextlib.suppress(OSError):
            if (await loop.run_in_executor(None, get))[0] == 200:
                return
        await asyncio.sleep(0.05)
    raise RuntimeServiceError(
        f"{name}'s router was not ready within {timeout_s:g} s.",
        "check its workers start (see the errors above).",
    )


async def _discard(stream: asyncio.StreamReader) -> None:
    with contextlib.suppress(Exception):
        while await stream.readline():
            pass


# Where each cell's router runs, by the pool backend's name (--backend).
ROUTER_HOSTS: Registry[Callable[[HostsRequest], RouterHosts]] = Registry(
    "cell router host",
    "--cells runs its routers as local processes (--backend local) or as Ray actors "
    "(--backend ray).",
)
ROUTER_HOSTS.add("local", LocalRouters)
ROUTER_HOSTS.add_path("ray", "kairos.serving.cells.ray_hosts:RayRouters")
