"""``kairos scale``, ``kairos status`` and ``kairos stop``: operate a running router.

A router is found by its URL (``--url``, any backend) or, for one started with ``kairos serve
--backend ray --detach``, by its name in a Ray cluster (``--address``); then the calls go
through the router's actor, from the head node.
"""

from __future__ import annotations

from typing import Any

import click
import orjson

from kairos.catalog import Pool
from kairos.cli.common import emit_json, table
from kairos.client.launch import http_request
from kairos.errors import ConfigError, RuntimeServiceError
from kairos.protocol.api import ADMIN_POOL_PATH, DEFAULT_URL
from kairos.serving.settings import RaySettings


class RouterClient:
    """Admin calls to one router: over HTTP, or through its detached Ray actor."""

    def __init__(self, url: str | None, address: str | None, name: str, token: str | None) -> None:
        self.token = token
        self.handle: Any = None
        self.info: dict[str, Any] = {}
        if address is not None:
            from kairos.serving.ray.router import find_router, router_info

            self.handle = find_router(address, RaySettings.default("namespace"), name)
            self.info = router_info(self.handle)
            self.url = str(self.info["url"])
        else:
            self.url = (url or DEFAULT_URL).rstrip("/")

    def call(self, path: str, body: bytes | None = None) -> Any:
        if self.handle is not None:
            from kairos.serving.ray.router import router_request

            status, text = router_request(self.handle, path, body)
        else:
            try:
                status, text = http_request(self.url + path, body, self.token, timeout_s=300.0)
            except OSError as exc:
                raise RuntimeServiceError(
                    f"cannot reach the router at {self.url} ({exc}).",
                    "check --url (or --address for a detached router) and that it runs.",
                ) from None
        if status != 200:
            raise RuntimeServiceError(
                f"{self.url}{path} answered HTTP {status}: {text[:300]}",
                "check --api-token, and the pool's types (kairos status shows the pool).",
            )
        return orjson.loads(text)


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


def _client(url: str | None, address: str | None, name: str, token: str | None) -> RouterClient:
    if url is not None and address is not None:
        raise ConfigError(
            "both --url and --address were given.",
            "pass --url for a router you started, or --address for a detached one.",
        )
    return RouterClient(url, address, name, token)


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
    client = _client(url, address, name, api_token)
    before = client.call(ADMIN_POOL_PATH)
    changed = client.call(ADMIN_POOL_PATH, orjson.dumps({"pool": str(target)}))
    after = client.call(ADMIN_POOL_PATH)
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
    client = _client(url, address, name, api_token)
    doc = client.call(ADMIN_POOL_PATH)
    info = {"url": client.url, "metrics_url": f"{client.url}/metrics", **client.info}
    if as_json:
        emit_json({**info, **doc})
        return
    where = f" (Ray actor {name!r} on node {info['node']})" if client.handle is not None else ""
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
