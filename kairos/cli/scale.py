"""``kairos scale``, ``kairos status`` and ``kairos stop``: operate a running router.

A router is found by its URL (``--url``, any backend) or, for one started with ``kairos serve
--backend ray --detach``, by its name in a Ray cluster (``--address``); then the calls go
through the router's actor, from the head node.
"""

from __future__ import annotations

import functools
from typing import Any

import click
import orjson

from kairos.catalog import Pool
from kairos.cli.common import emit_json, table
from kairos.client.admin import AdminClient
from kairos.errors import ConfigError, RuntimeServiceError
from kairos.protocol.api import DEFAULT_URL
from kairos.serving.cells.balancer import CELLS_PATH
from kairos.serving.settings import RaySettings


def _router_options(fn: Any) -> Any:
    for option in reversed(
        [
            click.option("--url", default=None, help=f"The router's URL (default {DEFAULT_URL})."),
            click.option(
                "--address",
                default=None,
                help="Find the detached router in this Ray cluster (HOST:6379, or auto).",
            ),
            click.option(
                "--name",
                default=RaySettings.default("router_name"),
                show_default=True,
                help="The detached router's name (with --address).",
            ),
            click.option("--api-token", envvar="KAIROS_API_TOKEN", default=None),
            click.option("--json", "as_json", is_flag=True, help="Print JSON."),
        ]
    ):
        fn = option(fn)
    return fn


def _client(
    url: str | None, address: str | None, name: str, token: str | None
) -> tuple[AdminClient, dict[str, Any]]:
    """The admin client of the router, and (for a detached one) its actor's info."""
    if url is not None and address is not None:
        raise ConfigError(
            "both --url and --address were given.",
            "pass --url for a router you started, or --address for a detached one.",
        )
    if address is None:
        return AdminClient((url or DEFAULT_URL).rstrip("/"), token), {}
    from kairos.serving.ray.router import find_router, router_info, router_request

    handle = find_router(address, RaySettings.default("namespace"), name)
    info = router_info(handle)
    return AdminClient(str(info["url"]), token, functools.partial(router_request, handle)), info


def _types(workers: list[dict[str, Any]]) -> dict[int, str]:
    return {int(w["instance"]): str(w["instance_type"]) for w in workers}


def _named(ids: list[int], types: dict[int, str]) -> str:
    return ", ".join(f"{j} ({types.get(j, '?')})" for j in ids) or "-"


@click.command()
@click.option("--pool", "pool_text", default=None, help="The new pool, TYPE=N,TYPE=N.")
@click.option(
    "--cell",
    type=click.IntRange(min=0),
    default=None,
    help="Cells (kairos serve --cells): resize this cell's pool to --pool.",
)
@click.option(
    "--cells",
    "n_cells",
    type=click.IntRange(min=1),
    default=None,
    help="Cells: add cells (copies of cell 0's pool) or remove the last ones (drained first) "
    "until there are N.",
)
@_router_options
def scale(pool_text, cell, n_cells, url, address, name, api_token, as_json):
    """Resize a running router's pool: new instances start and join, removed ones drain.
    For cells: resize one cell (--cell K --pool P), or add and remove whole cells (--cells N)."""
    if n_cells is not None or cell is not None:
        _scale_cells(pool_text, cell, n_cells, url, api_token, as_json)
        return
    if pool_text is None:
        raise ConfigError(
            "kairos scale needs --pool (or --cells N for cells).",
            "pass --pool TYPE=N,... (the new pool), --cell K --pool P, or --cells N.",
        )
    target = Pool.parse(pool_text)
    client, _ = _client(url, address, name, api_token)
    before = client.pool()
    changed = client.resize(str(target))
    after = client.pool()
    if as_json:
        emit_json({"before": before["pool"], **changed})
        return
    types = _types(after["workers"])
    click.echo(f"pool: {before['pool']} -> {changed['pool']}")
    click.echo(f"added:   {_named(changed['added'], types)}")
    click.echo(f"removed: {_named(changed['removed'], types)} (each finishes its query first)")


def _scale_cells(pool_text, cell, n_cells, url, api_token, as_json):
    """``kairos scale`` of a cell set (``kairos serve --cells``), through its balancer."""
    if (cell is None) == (n_cells is None) or (cell is not None) != (pool_text is not None):
        raise ConfigError(
            "kairos scale of cells takes --cell K with --pool P, or --cells N alone.",
            "resize one cell with --cell K --pool TYPE=N,..., or pass --cells N to add or "
            "remove whole cells.",
        )
    client = AdminClient((url or DEFAULT_URL).rstrip("/"), api_token)
    if cell is not None:
        Pool.parse(pool_text)  # a malformed pool fails here, in one line
        doc = client.call(f"{CELLS_PATH}/{cell}/pool", orjson.dumps({"pool": pool_text}))
        if as_json:
            emit_json(doc)
            return
        click.echo(
            f"cell {cell}: pool {doc['pool']} (added {doc['added']}, removed "
            f"{doc['removed']}; removed instances finish their query first)"
        )
        return
    doc = client.call(CELLS_PATH, orjson.dumps({"cells": n_cells}))
    if as_json:
        emit_json(doc)
        return
    click.echo(
        f"cells: {doc['cells']} (added {doc['added'] or '-'}, removed "
        f"{doc['removed'] or '-'}; removed cells drained first)"
    )


def _cells_status(client: AdminClient) -> dict[str, Any] | None:
    """The cell set behind ``client``'s URL (None: a plain router, which has no cells)."""
    try:
        doc: dict[str, Any] = client.call(CELLS_PATH)
    except RuntimeServiceError:
        return None
    return doc if isinstance(doc, dict) and "cells" in doc else None


def _show_cells(doc: dict[str, Any]) -> None:
    click.echo(
        f"cells:   {len(doc['cells'])} behind {doc['url']} (balancer: {doc['balancer']}, "
        f"configuration {doc['balancer_config']})"
    )
    click.echo(f'metrics: {doc["url"]}/metrics (every cell\'s, and their sum as cell="all")')
    click.echo(f"pool:    {doc['pool']}")
    click.echo(f"retried on another cell: {doc['retries']}; answered 503: {doc['responses_5xx']}")
    rows = [
        [
            str(c["cell"]),
            c["pool"],
            str(c["weight"]),
            c["balancer_status"],
            "ready" if c["ready"] else "starting",
            str(c["restarts"]),
            c["url"],
            str(c["pid"] or "-"),
        ]
        for c in doc["cells"]
    ]
    click.echo(
        table(rows, ["cell", "pool", "weight", "balancer", "router", "restarts", "url", "pid"])
    )


@click.command()
@_router_options
def status(url, address, name, api_token, as_json):
    """Show a running router: its pool and each instance's node, state and address (for
    cells: each cell's pool, weight, state, restarts and router)."""
    client, actor = _client(url, address, name, api_token)
    cells = _cells_status(client) if address is None else None
    if cells is not None:
        if as_json:
            emit_json(cells)
        else:
            _show_cells(cells)
        return
    doc = client.pool()
    info = {"url": client.url, "metrics_url": client.metrics_url, **actor}
    if as_json:
        emit_json({**info, **doc})
        return
    where = f" (Ray actor {name!r} on node {info['node']})" if client.send is not None else ""
    click.echo(f"router:  {info['url']}{where}")
    click.echo(f"metrics: {info['metrics_url']}")
    click.echo(f"pool:    {doc['pool']}")
    rows = [
        [
            str(w["instance"]),
            w["instance_type"],
            w["state"],
            w["address"] or "-",
            str(w["pid"] or "-"),
            w["node"] or "-",
        ]
        for w in doc["workers"]
    ]
    click.echo(table(rows, ["instance", "type", "state", "address", "pid", "node"]))


@click.command()
@click.option("--address", default="auto", show_default=True, help="The Ray cluster.")
@click.option(
    "--name",
    default=RaySettings.default("router_name"),
    show_default=True,
    help="The detached router's name.",
)
def stop(address, name):
    """Stop a detached router: drain its queries, stop its instances, remove its actor."""
    from kairos.serving.ray.router import find_router, router_info, stop_detached

    handle = find_router(address, RaySettings.default("namespace"), name)
    url = router_info(handle)["url"]
    stop_detached(handle)
    click.echo(f"stopped the router {name!r} ({url})")


COMMANDS = [scale, status, stop]
