"""The cell set's admin API, served beside the routers (the balancer sends ``/v2/cells`` and
``/metrics`` to it): the cells and the balancer's view of each, the aggregate metrics, a
cell resized, cells added or removed. Apart from the cell set so that each stays short; it
sees the cell set through ``CellOwner``, so the two modules do not import each other."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import orjson

from kairos.catalog import Pool
from kairos.client.admin import http_request
from kairos.errors import KairosError
from kairos.protocol.api import METRICS_PATH
from kairos.serving.cells.balancer import CELLS_PATH, Haproxy
from kairos.serving.cells.cell import Cell
from kairos.serving.cells.metrics import aggregate
from kairos.serving.router.config import RouterConfig
from kairos.serving.router.http import Deferred, HttpRequest, HttpResponse


class CellOwner(Protocol):
    """What the admin API reads and calls on the cell set."""

    cells: list[Cell]
    haproxy: Haproxy | None
    config_path: Path | None
    cfg: RouterConfig

    @property
    def url(self) -> str: ...

    async def set_cells(self, n: int) -> dict[str, Any]: ...

    async def resize_cell(self, index: int, pool: Pool) -> dict[str, Any]: ...


class CellAdmin:
    """The admin API's handler over one cell set."""

    def __init__(self, owner: CellOwner) -> None:
        self.owner = owner

    def status(self) -> dict[str, Any]:
        """The cells as ``kairos status`` shows them, with the balancer's view of each."""
        rows: dict[str, dict[str, str]] = {}  # HAProxy's view: each cell, and BACKEND
        if self.owner.haproxy is not None:
            with contextlib.suppress(OSError):
                rows = self.owner.haproxy.servers()
        total: dict[str, int] = {}
        cells = []
        for c in self.owner.cells:
            for t, n in c.pool.counts:
                total[t] = total.get(t, 0) + n
            row = rows.get(c.name, {})
            cells.append(
                {
                    "cell": c.index,
                    "pool": str(c.pool),
                    "capacity_qps": c.capacity_qps,
                    "weight": c.weight,
                    "url": c.url,
                    "pid": c.pid,
                    "node": c.node,  # a Ray router's node id (None: a local router)
                    "ready": c.ready,
                    "removing": c.removing,
                    "restarts": c.restarts,
                    "back_s": list(c.back_s),
                    "balancer_status": row.get("status", "-"),
                    "balancer_addr": row.get("addr", "-"),  # where the balancer sends it
                    "sessions": int(row.get("stot") or 0),
                    "open": int(row.get("scur") or 0),
                    "retries": int(row.get("wretr") or 0),
                    "redispatches": int(row.get("wredis") or 0),
                    "responses_5xx": int(row.get("hrsp_5xx") or 0),
                }
            )
        return {
            "url": self.owner.url,
            "balancer": "haproxy" if self.owner.haproxy is not None else "external",
            "balancer_pid": None if self.owner.haproxy is None else self.owner.haproxy.pid,
            "balancer_config": str(self.owner.config_path),
            "pool": str(Pool.of(total)),
            # Over the whole service: queries sent once more to another cell, and 5xx answers
            # (every one a 503 with a JSON error: no cell could answer).
            "retries": int(rows.get("BACKEND", {}).get("wretr") or 0),
            "redispatches": int(rows.get("BACKEND", {}).get("wredis") or 0),
            "responses_5xx": int(rows.get("BACKEND", {}).get("hrsp_5xx") or 0),
            "cells": cells,
        }

    async def metrics(self) -> str:
        loop = asyncio.get_running_loop()

        async def one(cell: Cell) -> tuple[str, str | None]:
            url = f"{cell.url}{METRICS_PATH}"
            try:
                get = partial(http_request, url, token=self.owner.cfg.http.api_token)
                status, text = await loop.run_in_executor(None, get)
            except OSError:
                return str(cell.index), None
            return str(cell.index), text if status == 200 else None

        return aggregate(await asyncio.gather(*(one(c) for c in self.owner.cells)))

    def handle(self, req: HttpRequest) -> HttpResponse | Deferred:
        path = req.path.split("?", 1)[0].rstrip("/")
        token = self.owner.cfg.http.api_token
        given = req.headers.get("authorization", "").encode()
        if token and not hmac.compare_digest(given, f"Bearer {token}".encode()):
            # The same rule as each router's: with --api-token, admin and metrics need it.
            return _json(401, {"error": "missing or wrong bearer token."})
        if req.method == "GET" and path == CELLS_PATH:
            return _json(200, self.status())
        if req.method == "GET" and path == METRICS_PATH:
            return _later(self._metrics_response())
        if req.method == "POST" and path == CELLS_PATH:
            return _later(self._post(req.body, lambda doc: self.owner.set_cells(int(doc["cells"]))))
        parts = path[len(CELLS_PATH) :].strip("/").split("/")
        if req.method == "POST" and path.startswith(CELLS_PATH + "/") and parts[1:] == ["pool"]:
            return _later(
                self._post(
                    req.body,
                    lambda doc: self.owner.resize_cell(int(parts[0]), Pool.parse(str(doc["pool"]))),
                )
            )
        return _json(404, {"error": f"no {req.method} {path} on the cell set"})

    async def _metrics_response(self) -> HttpResponse:
        return HttpResponse(200, (await self.metrics()).encode(), b"text/plain; version=0.0.4")

    async def _post(self, body: bytes, act: Callable[[dict[str, Any]], Any]) -> HttpResponse:
        try:
            doc = orjson.loads(body)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            return _json(200, await act(doc))
        except KairosError as exc:
            return _json(400, {"error": str(exc)})
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
            return _json(400, {"error": f"bad request body ({exc})"})


def _json(status: int, doc: Any) -> HttpResponse:
    return HttpResponse(status, orjson.dumps(doc))


def _later(work: Any) -> Deferred:
    answer = Deferred()

    def done(task: asyncio.Task[HttpResponse]) -> None:
        exc = task.exception()
        if exc is not None:
            answer.resolve(_json(500, {"error": f"{type(exc).__name__}: {exc}"}))
        else:
            answer.resolve(task.result())

    asyncio.ensure_future(work).add_done_callback(done)
    return answer
