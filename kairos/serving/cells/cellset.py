"""The cell set: N router processes, each serving its cell's pool with its own workers, behind
one balancer; it restarts a router that dies, resizes a cell, adds and removes whole cells.

The pool is cut by ``kairos.sim.celled.cut`` (``split_pool``: the cut the simulator and the
planner make), and each cell weighs in the balancer by its capacity
(``cell_capacities_qps``), so every cell runs at the same load. Where each router runs is
its host's business (``hosts.py``, by ``--backend``): a local process (``child.py``) or a Ray
actor on a router node (``ray_hosts.py``). Either way a router owns its cell's workers: a
cell's worker failures stay inside it, and its workers go with it.

A router that exits on its own (killed, crashed) is started again. The balancer marks the
cell down at its first refused connection (its in-flight queries were retried on another
cell, or answered 503), and up at the first ready health check of the new router. A local
router comes back on the same port, so the balancer's configuration does not change; a Ray
router may come back on another node or port, and the balancer's server for the cell is
moved there over its runtime socket (``set server ... addr``).

The cell set serves its own admin API beside the routers (``admin.py``): a removed cell
drains first (no new queries, its open ones answered), then its router stops.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from kairos.catalog import Pool
from kairos.client.admin import AdminClient
from kairos.errors import ConfigError, KairosError
from kairos.protocol.api import LISTEN_CELLS
from kairos.scenario import Scenario
from kairos.serving.cells.admin import CellAdmin
from kairos.serving.cells.balancer import (
    CellServer,
    Haproxy,
    haproxy_binary,
    write_config,
)
from kairos.serving.cells.cell import Cell, capacity_qps
from kairos.serving.cells.config import CellSettings
from kairos.serving.cells.hosts import LOOPBACK, ROUTER_HOSTS, HostsRequest
from kairos.serving.router.config import RouterConfig
from kairos.serving.router.http import HttpServer
from kairos.serving.router.traffic import HeadroomFactory
from kairos.sim.cells import integer_weights

ADMIN_MAX_BODY_BYTES = 64 * 1024


class CellSet:
    """The routers of ``pools`` (one cell each), their balancer and the admin API."""

    def __init__(
        self,
        cfg: RouterConfig,
        scenario: Scenario,
        pools: Sequence[Pool],
        settings: CellSettings,
        headroom: HeadroomFactory | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.scenario = scenario
        self.settings = settings
        self.headroom = headroom
        self.log = log or (lambda m: print(f"kairos cells: {m}", file=sys.stderr, flush=True))
        self.cells = [Cell(k, p, capacity_qps(scenario, p)) for k, p in enumerate(pools)]
        self.bind = (cfg.http.host, cfg.http.port)
        self.haproxy: Haproxy | None = None
        self.config_path: Path | None = None
        self.admin: tuple[str, int] = ("127.0.0.1", 0)
        self._server = HttpServer(CellAdmin(self).handle, ADMIN_MAX_BODY_BYTES)
        self._dir: Path | None = None
        self._watchers: list[asyncio.Task[None]] = []
        self._busy = asyncio.Lock()  # one resize or cell change at a time
        self.closing = False
        # Where the routers run (--backend): local processes, or Ray actors (which joins Ray
        # now, before run_cells installs its signal handlers).
        request = HostsRequest(cfg, scenario, settings, headroom, lambda: self.closing)
        self.hosts = ROUTER_HOSTS.get(cfg.workers.backend)(request)

    @property
    def url(self) -> str:
        host, port = self.bind
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    # -- start and stop ----------------------------------------------------------------

    async def start(self) -> None:
        """Routers, then the balancer in front of them (or its configuration written)."""
        binary = None if self.settings.balancer_config else haproxy_binary(self.settings)
        if self.bind[1] == 0:  # HAProxy cannot report a port it picked: pick a free one here
            self.bind = (self.bind[0], _free_port(self.bind[0]))
        # Only the balancer, on this machine, talks to the admin server.
        self.admin = await self._server.start(LOOPBACK, 0)
        await asyncio.gather(*(self._launch(c) for c in self.cells))
        self._reweigh()
        if binary is None:
            self.config_path = Path(str(self.settings.balancer_config))
            self._write()
        else:
            self._dir = Path(tempfile.mkdtemp(prefix="kairos-cells-"))
            self.config_path = self._dir / "haproxy.cfg"
            self.haproxy = Haproxy(binary, self.config_path, self._dir / "runtime.sock")
            self._write()
            # In this thread: HAProxy is told to stop when the thread that started it ends.
            self.haproxy.start()
        self._watchers = [asyncio.ensure_future(self._watch(c)) for c in self.cells]

    def _write(self) -> None:
        assert self.config_path is not None
        servers = [
            CellServer(c.name, c.host, c.port, c.weight) for c in self.cells if not c.removing
        ]
        sock = None if self.haproxy is None else self.haproxy.socket
        write_config(self.config_path, self.settings, self.bind, servers, self.admin, sock)

    def _reweigh(self) -> None:
        live = [c for c in self.cells if not c.removing]
        for cell, weight in zip(live, integer_weights([c.capacity_qps for c in live]), strict=True):
            cell.weight = weight

    async def close(self) -> None:
        """Stop the balancer (it finishes its open queries), then every router (each drains
        its queue), then the admin server."""
        self.closing = True
        loop = asyncio.get_running_loop()
        if self.haproxy is not None:
            await loop.run_in_executor(None, self.haproxy.stop)
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        await asyncio.gather(*(self.hosts.stop(c) for c in self.cells))
        await self.hosts.close()
        await self._server.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    # -- one router ----------------------------------------------------------------------

    def _router_config(self, cell: Cell) -> RouterConfig:
        """The cell's router's config (its host sets where it listens)."""
        return replace(
            self.cfg,
            pool=cell.pool,
            seed=self.cfg.seed + cell.index,  # each cell's workers draw their own numbers
        )

    async def _launch(self, cell: Cell) -> None:
        """Start the cell's router; return once it answers ready."""
        cell.ready = False
        await self.hosts.launch(cell, self._router_config(cell))
        cell.ready = True

    async def _watch(self, cell: Cell) -> None:
        """Start the router again whenever it exits on its own."""
        while not self.closing and not cell.removing:
            how = await self.hosts.exited(cell)
            if self.closing or cell.removing:
                return
            exited_t = time.monotonic()
            cell.ready = False
            self.log(f"{cell.name}'s router {how}; starting it again")
            address = (cell.host, cell.port)
            while not self.closing and not cell.removing:
                await asyncio.sleep(self.settings.restart_delay_s)
                try:
                    await self._launch(cell)
                    break
                except (KairosError, OSError, TimeoutError) as exc:
                    self.log(f"{cell.name}'s router did not start again ({exc}); retrying")
                    await asyncio.sleep(1.0)
            if (cell.host, cell.port) != address and not cell.removing:
                self._moved(cell)
            cell.restarts += 1
            cell.back_s.append(time.monotonic() - exited_t)
            self.log(f"{cell.name} is back after {cell.back_s[-1]:.2f} s")

    def _moved(self, cell: Cell) -> None:
        """A restarted router listens elsewhere (a Ray router's new node or port): point the
        cell's server there (the health checks bring it up)."""
        self.log(f"{cell.name}'s router moved to {cell.url}")
        if self.config_path is not None:
            self._write()
        if self.haproxy is not None:
            self.haproxy.set_address(cell.name, cell.host, cell.port)

    # -- changes -------------------------------------------------------------------------

    async def resize_cell(self, index: int, pool: Pool) -> dict[str, Any]:
        """Resize one cell (its router adds and drains instances) and reweigh the cells."""
        self.scenario.check_pool(pool)
        async with self._busy:
            cell = self._cell(index)
            client = AdminClient(cell.url, self.cfg.http.api_token)
            loop = asyncio.get_running_loop()
            changed = await loop.run_in_executor(None, client.resize, str(pool))
            cell.pool = pool
            cell.capacity_qps = capacity_qps(self.scenario, pool)
            self._apply_weights()
            return {"cell": index, **changed}

    def _apply_weights(self) -> None:
        self._reweigh()
        self._write()
        if self.haproxy is not None:
            for c in self.cells:
                if not c.removing:
                    self.haproxy.set_weight(c.name, c.weight)

    async def set_cells(self, n: int) -> dict[str, Any]:
        """Add cells (copies of cell 0's pool: the cell plan repeated) or remove the last
        ones (drained first) until there are ``n``."""
        if n < 1:
            raise ConfigError(f"--cells {n} is below 1.", "keep at least one cell.")
        async with self._busy:
            live = [c for c in self.cells if not c.removing]
            added, removed = [], []
            for k in range(len(live), n):
                template = live[0].pool
                cell = Cell(k, template, capacity_qps(self.scenario, template))
                await self._launch(cell)
                self.cells.append(cell)
                self._reweigh()
                if self.haproxy is not None:
                    server = CellServer(cell.name, cell.host, cell.port, cell.weight)
                    self.haproxy.add_server(server, self.settings)
                self._watchers.append(asyncio.ensure_future(self._watch(cell)))
                added.append(k)
            for cell in reversed(live[n:]):
                await self._remove(cell)
                removed.append(cell.index)
            self._apply_weights()
            return {"cells": n, "added": added, "removed": removed}

    async def _remove(self, cell: Cell) -> None:
        """Drain: no new queries for the cell, its open ones answered, then its router stops
        and the balancer forgets it."""
        cell.removing = True
        haproxy = self.haproxy
        if haproxy is not None:
            haproxy.set_state(cell.name, "drain")
            deadline = time.monotonic() + self.settings.drain_timeout_s
            while time.monotonic() < deadline:
                row = haproxy.servers().get(cell.name, {})
                if row.get("scur", "0") == "0" and row.get("qcur", "0") in ("0", ""):
                    break
                await asyncio.sleep(0.05)
            haproxy.set_state(cell.name, "maint")
        await self.hosts.stop(cell)
        if haproxy is not None:
            deadline = time.monotonic() + 10.0
            while not haproxy.delete_server(cell.name) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)  # idle connections to it are still closing
        self.cells.remove(cell)

    def _cell(self, index: int) -> Cell:
        for cell in self.cells:
            if cell.index == index and not cell.removing:
                return cell
        raise ConfigError(
            f"there is no cell {index} (cells: {', '.join(str(c.index) for c in self.cells)}).",
            "pass --cell with one of the cells kairos status lists.",
        )


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def run_cells(
    cfg: RouterConfig,
    scenario: Scenario,
    pools: Sequence[Pool],
    settings: CellSettings,
    headroom: HeadroomFactory | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``pools`` as cells until SIGINT/SIGTERM (or ``stop``), then stop them all."""
    cells = CellSet(cfg, scenario, pools, settings, headroom)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    try:
        await cells.start()
        where = f"{cells.url} (balancer: HAProxy)"
        if cells.haproxy is None:
            where = f"{cells.url} (balancer: yours, configuration in {cells.config_path})"
        print(
            f"{LISTEN_CELLS} {where}; {len(pools)} cells of model {scenario.model}: "
            + "; ".join(f"{c.name} {c.pool} weight {c.weight}" for c in cells.cells),
            flush=True,
        )
        await stop.wait()
        cells.log("stopping: the balancer, then each cell's router drains")
    finally:
        await cells.close()
