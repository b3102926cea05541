"""The admin calls of a running router: its traffic view, its pool (read and resize), its status.

Each call is one blocking request on the one HTTP client (``kairos.client.http.request``) to
a path ``kairos.protocol.api`` declares. ``fetch_traffic`` serves ``kairos advise`` and ``kairos
plan --mix-from``; ``AdminClient`` serves ``kairos scale`` and ``kairos status``;
``http_request`` is the plain call under both (the router launcher's readiness probe, the Ray
router actor, tests and benchmarks use it too).

A router detached in a Ray cluster is reached through its actor rather than over HTTP: the
caller hands ``AdminClient`` a ``send`` that goes through the actor, since the Ray code sits
above this room.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from kairos.client.http import request
from kairos.errors import RuntimeServiceError
from kairos.protocol.api import ADMIN_POOL_PATH, METRICS_PATH, TRAFFIC_PATH

READ_TIMEOUT_S = 10.0  # a read of a small document (health, traffic view, metadata)
# A resize answers once the new instances have started, which may take minutes (models load).
ADMIN_TIMEOUT_S = 300.0

# (path, body or None) -> (status, text): how an AdminClient reaches its router.
Send = Callable[[str, bytes | None], tuple[int, str]]


def http_request(
    url: str,
    body: bytes | None = None,
    token: str | None = None,
    timeout_s: float = READ_TIMEOUT_S,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """(status, text) of a GET (or POST when ``body`` is given); HTTP errors are returned,
    and a refused or dropped connection raises OSError."""
    hdrs = {"Content-Type": "application/json"} | (headers or {})
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    response = request(url, body, hdrs, timeout_s)
    return response.status, response.text


def fetch_traffic(
    url: str, token: str | None = None, timeout_s: float = READ_TIMEOUT_S
) -> dict[str, Any]:
    """The router's traffic view (``GET {url}/v2/traffic``): model, QoS, policy, running
    pool, observed rate and batch mix."""
    try:
        status, text = http_request(
            url.rstrip("/") + TRAFFIC_PATH, token=token, timeout_s=timeout_s
        )
    except (OSError, ValueError) as exc:
        raise _unreadable_traffic(url, exc) from None
    if status != 200:
        raise RuntimeServiceError(
            f"router at {url} answered {status} to GET {TRAFFIC_PATH}.",
            "check --url points at a kairos router and pass --api-token if it needs one.",
        )
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise _unreadable_traffic(url, exc) from None
    if not isinstance(doc, dict) or "pool" not in doc:
        raise RuntimeServiceError(
            f"{url}{TRAFFIC_PATH} did not return a kairos traffic view.", "point --url at a router."
        )
    return doc


def _unreadable_traffic(url: str, exc: Exception) -> RuntimeServiceError:
    return RuntimeServiceError(
        f"cannot read the traffic of the router at {url} ({exc}).",
        "check the router runs and --url is its address, e.g. http://127.0.0.1:8000.",
    )


@dataclass(frozen=True)
class AdminClient:
    """Admin calls to the router at ``url``: over HTTP, or through ``send`` when given."""

    url: str
    token: str | None = None
    send: Send | None = None
    timeout_s: float = ADMIN_TIMEOUT_S

    @property
    def metrics_url(self) -> str:
        return self.url + METRICS_PATH

    def call(self, path: str, body: bytes | None = None) -> Any:
        """The JSON answer to GET ``path`` (POST with ``body``); anything but 200 raises."""
        if self.send is not None:
            status, text = self.send(path, body)
        else:
            try:
                status, text = http_request(self.url + path, body, self.token, self.timeout_s)
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
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise RuntimeServiceError(
                f"{self.url}{path} answered 200 with a body that is not JSON ({exc}).",
                "point --url at a kairos router.",
            ) from None

    def pool(self) -> dict[str, Any]:
        """``GET /v2/admin/pool``: the running pool and each instance's type, state, address,
        pid and node (what ``kairos status`` shows)."""
        doc: dict[str, Any] = self.call(ADMIN_POOL_PATH)
        return doc

    def resize(self, pool: str) -> dict[str, Any]:
        """``POST /v2/admin/pool``: resize to ``pool`` (``TYPE=N,...``); the answer names the
        new pool and the instances added and removed."""
        doc: dict[str, Any] = self.call(ADMIN_POOL_PATH, orjson.dumps({"pool": pool}))
        return doc
