"""The one HTTP/1.1 client in Kairos: httptools' response parser, used two ways.

``ResponseReader`` turns bytes into complete responses (Content-Length or chunked bodies,
keep-alive or close), the same parser family the router's server uses for requests.
``HttpPool`` drives it on asyncio keep-alive connections for the load generator, where the
client's own CPU per request matters (a 2-core machine shares it with the router under test;
aiohttp's client cost about twice as much). ``request`` drives it on a blocking socket, one
request per connection, for start-up probes, tests and benchmarks.

Only ``http://`` URLs: the router serves plain HTTP on loopback (put TLS in front of it).
"""

from __future__ import annotations

import asyncio
import collections
import socket
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

import httptools

from kairos.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes
    done_t: float  # perf_counter() when the response's last byte had arrived

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class ResponseReader:
    """Feed it bytes; complete responses queue up in ``done``.

    Raises ``ConnectionError`` on bytes that are not an HTTP/1.1 response.
    """

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.done: collections.deque[Response] = collections.deque()
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self.keep_alive = True
        self.in_message = False

    def feed(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise ConnectionError(f"malformed HTTP response ({exc})") from None

    def finish(self) -> None:
        """The connection closed: a response delimited by the close is complete now."""
        if (
            self.in_message
            and "content-length" not in self._headers
            and ("chunked" not in self._headers.get("transfer-encoding", ""))
        ):
            self.on_message_complete()

    def on_message_begin(self) -> None:
        self._headers = {}
        self._body = []
        self.in_message = True

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        old = self._headers.get(key)
        self._headers[key] = text if old is None else f"{old}, {text}"

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        self.keep_alive = self._parser.should_keep_alive()
        status = self._parser.get_status_code()
        body = b"".join(self._body)
        self.done.append(Response(status, self._headers, body, time.perf_counter()))


@dataclass(frozen=True)
class Target:
    """Where requests go: ``host``, ``port`` and the URL's path prefix."""

    host: str
    port: int
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port or 80
        except ValueError:
            port = -1
        if parts.scheme != "http" or not parts.hostname or not 0 < port < 65536:
            raise ConfigError(
                f"URL {url!r} is not http://HOST[:PORT][/PATH] with a port in 1..65535.",
                "pass the router's URL as it prints it, e.g. http://127.0.0.1:8000.",
            )
        return cls(parts.hostname, port, parts.path.rstrip("/"))

    def request_bytes(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        close: bool = False,
    ) -> bytes:
        """One encoded request for ``prefix + path``."""
        lines = [f"{method} {self.prefix}{path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method not in ("GET", "HEAD"):
            lines.append(f"Content-Length: {len(body)}")
        if close:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def request(
    url: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
    method: str | None = None,
) -> Response:
    """A blocking request (GET, or POST with ``body``) on a fresh connection.

    Any status is returned as a Response; a refused, dropped or timed-out connection, or a
    reply that is not HTTP, raises ``OSError``.
    """
    target = Target.parse(url)
    parts = urllib.parse.urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    verb = method or ("GET" if body is None else "POST")
    bare = Target(target.host, target.port, "")
    data = bare.request_bytes(verb, path, body or b"", headers, close=True)
    reader = ResponseReader()
    deadline = time.monotonic() + timeout_s
    with socket.create_connection((target.host, target.port), timeout=timeout_s) as sock:
        sock.sendall(data)
        while not reader.done:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                reader.finish()
                if not reader.done:
                    raise ConnectionError("the server closed the connection without an answer")
                break
            reader.feed(chunk)
    return reader.done[0]


class _Connection(asyncio.Protocol):
    """One keep-alive connection answering one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.reader = ResponseReader()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.reader.feed(data)
        except ConnectionError as exc:
            self._fail(exc)
            return
        if self.reader.done:
            response = self.reader.done.popleft()
            if not self.reader.keep_alive:
                self.closed = True
            waiter, self.waiter = self.waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reader.finish()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            if self.reader.done:
                waiter.set_result(self.reader.done.popleft())
            else:
                waiter.set_exception(ConnectionError("connection closed by the server"))

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class HttpPool:
    """Keep-alive connections to one server, as many as there are requests in flight."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.target = Target.parse(url)
        self._timeout_s = timeout_s
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()

    async def send(self, request: bytes) -> Response:
        """Send one encoded request; raise OSError (or TimeoutError) if no answer came."""
        conn = self._idle.pop() if self._idle else await self._connect()
        conn.waiter = asyncio.get_running_loop().create_future()
        assert conn.transport is not None
        try:
            conn.transport.write(request)
            async with asyncio.timeout(self._timeout_s):
                response = await conn.waiter
        except BaseException:
            self._drop(conn)
            raise
        if conn.closed:
            self._drop(conn)
        else:
            self._idle.append(conn)
        return response

    async def fetch(
        self, method: str, path: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        """One request built here (``path`` below the URL's path)."""
        return await self.send(self.target.request_bytes(method, path, b"", headers))

    async def warm(self, n: int) -> None:
        """Open connections up front (up to ``n`` idle) so the run does not pay for them."""
        missing = max(0, n - len(self._idle))
        conns = await asyncio.gather(*(self._connect() for _ in range(missing)))
        self._idle.extend(conns)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, self.target.host, self.target.port)
        self._all.add(conn)
        return conn

    def _drop(self, conn: _Connection) -> None:
        conn.closed = True
        self._all.discard(conn)
        if conn.transport is not None:
            conn.transport.close()

    def close(self) -> None:
        for conn in list(self._all):
            self._drop(conn)
        self._idle.clear()
