"""``kairos scale``, ``kairos status`` and ``kairos stop``: operate a running router.

A router is found by its URL (``--url``, any backend) or, for one started with ``kairos serve
--backend ray --detach``, by its name in a Ray cluster (``--address``); then the calls go
through the router's actor, from the head node.
"""

from __future__ import annotations

import functools
from typing import Any

import click

from kairos.catalog import Pool
from kairos.cli.common import emit_json, table
from kairos.client.admin import AdminClient
from kairos.errors import ConfigError
from kairos.protocol.api import DEFAULT_URL
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
@click.option("--pool", "pool_text", required=True, help="The new pool, TYPE=N,TYPE=N.")
@_router_options
def scale(pool_text, url, address, name, api_token, as_json):
    """Resize a running router's pool: new instances start and join, removed ones drain."""
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


@click.command()
@_router_options
def status(url, address, name, api_token, as_json):
    """Show a running router: its pool and each instance's node, state and address."""
    client, actor = _client(url, address, name, api_token)
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
