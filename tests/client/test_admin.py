"""The admin calls of a router against a loopback stand-in: what they send, what they return,
and the message each failure gives (the ones ``kairos advise``, ``scale`` and ``status`` print)."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from kairos.client.admin import AdminClient, fetch_traffic
from kairos.errors import RuntimeServiceError
from kairos.protocol.api import ADMIN_POOL_PATH, TRAFFIC_PATH

VIEW = {"model": "rm2", "qos_ms": 350.0, "policy": "kairos", "pool": "r5n.large=2"}


@dataclass
class StandIn:
    """What the stand-in answers (status, body) and what it was asked (method, path, headers,
    body)."""

    url: str = ""
    status: int = 200
    body: bytes = b"{}"
    asked: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    state = StandIn()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            sent = self.rfile.read(length) if length else b""
            state.asked.append((self.command, self.path, dict(self.headers), sent))
            self.send_response(state.status)
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def dead_url() -> str:
    """A loopback URL nothing listens on (a port just bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_traffic_view_is_read_with_the_token(stand_in: StandIn) -> None:
    stand_in.body = json.dumps(VIEW).encode()
    assert fetch_traffic(stand_in.url + "/", "secret") == VIEW
    ((method, path, headers, _),) = stand_in.asked
    assert (method, path, headers["Authorization"]) == ("GET", TRAFFIC_PATH, "Bearer secret")


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (404, b"no", "answered 404 to GET /v2/traffic. To fix: check --url points at a kairos"),
        (200, b"hello", "cannot read the traffic of the router at http://127.0.0.1:"),
        (200, b"[1, 2]", "/v2/traffic did not return a kairos traffic view. To fix: point --url"),
        (200, b'{"model": "rm2"}', "did not return a kairos traffic view"),
    ],
)
def test_traffic_view_failures_say_what_the_router_answered(
    stand_in: StandIn, status: int, body: bytes, message: str
) -> None:
    stand_in.status, stand_in.body = status, body
    with pytest.raises(RuntimeServiceError) as err:
        fetch_traffic(stand_in.url)
    assert message in str(err.value)


def test_traffic_view_of_a_router_that_does_not_run() -> None:
    url = dead_url()
    with pytest.raises(RuntimeServiceError, match="cannot read the traffic of the router at"):
        fetch_traffic(url)


def test_pool_is_read_and_resized_with_the_token(stand_in: StandIn) -> None:
    client = AdminClient(stand_in.url, "secret")
    stand_in.body = b'{"pool": "r5n.large=2", "workers": []}'
    assert client.pool() == {"pool": "r5n.large=2", "workers": []}
    stand_in.body = b'{"pool": "r5n.large=3", "added": [2], "removed": []}'
    assert client.resize("r5n.large=3")["added"] == [2]
    (get, post) = stand_in.asked
    assert get[:2] == ("GET", ADMIN_POOL_PATH) and get[2]["Authorization"] == "Bearer secret"
    assert post[:2] == ("POST", ADMIN_POOL_PATH)
    assert json.loads(post[3]) == {"pool": "r5n.large=3"}
    assert client.metrics_url == stand_in.url + "/metrics"


def test_admin_failures_name_the_call_and_the_fix(stand_in: StandIn) -> None:
    stand_in.status, stand_in.body = 401, b"missing bearer token"
    with pytest.raises(RuntimeServiceError) as err:
        AdminClient(stand_in.url).pool()
    assert str(err.value) == (
        f"{stand_in.url}/v2/admin/pool answered HTTP 401: missing bearer token To fix: check "
        "--api-token, and the pool's types (kairos status shows the pool)."
    )
    stand_in.status, stand_in.body = 200, b"<html>"
    with pytest.raises(RuntimeServiceError, match="answered 200 with a body that is not JSON"):
        AdminClient(stand_in.url).pool()
    url = dead_url()
    with pytest.raises(RuntimeServiceError, match=f"cannot reach the router at {url} "):
        AdminClient(url).pool()


def test_calls_go_through_send_when_given() -> None:
    """A detached Ray router is reached through its actor: no HTTP from here."""
    sent: list[tuple[str, bytes | None]] = []

    def send(path: str, body: bytes | None) -> tuple[int, str]:
        sent.append((path, body))
        return (200, '{"pool": "r5n.large=1"}') if body is None else (503, "draining")

    client = AdminClient(dead_url(), send=send)
    assert client.pool() == {"pool": "r5n.large=1"}
    with pytest.raises(RuntimeServiceError, match="answered HTTP 503: draining"):
        client.resize("r5n.large=2")
    assert sent == [(ADMIN_POOL_PATH, None), (ADMIN_POOL_PATH, b'{"pool":"r5n.large=2"}')]
