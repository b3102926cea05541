"""The router's HTTP/1.1 server: httptools' parser under a plain asyncio protocol.

Why not aiohttp's (or uvicorn's) server: the router's ceiling and its added latency are set
by CPU per query, and on the 2-core development machine a 25 KB POST answered with a small
JSON cost about 150 us of server CPU in aiohttp (uvicorn with httptools: the same) against
about 45 us with the parser driven directly (open loop, 500 requests/s, one request per
wake-up; docs/runtime.md, "HTTP stack"). The framework features the router does not use
(middleware chains, a request object per call, a task per request, streaming bodies) are
what that difference buys.

What it does: keep-alive, pipelined requests answered in order, chunked request bodies (the
parser decodes them), ``Expect: 100-continue``, a body size limit (the body is read and
dropped, then the handler is told, so the client always gets an answer it can read), 400 and
close on a malformed request, and deadlines for reading a request: its head (request line
and headers) must arrive within ``head_timeout_s`` of its first byte and its body within
``body_timeout_s`` of the head, else the client gets 408 and the connection is closed, so a
client sending a byte at a time cannot hold a connection (a sweep checks every connection
once a second: no timer per request). An idle keep-alive connection is closed after
``keepalive_timeout_s``. A handler returns an ``HttpResponse`` or a ``Deferred`` one;
``Deferred.resolve`` writes the answer at once, inside the caller's callback: no task per
request, and no event-loop pass between the answer being known and being sent (an asyncio
future would schedule its callbacks for the next pass, behind whatever else is ready).
"""

from __future__ import annotations

import asyncio
import collections
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import httptools

JSON = b"application/json"
MAX_PIPELINED = 16  # requests buffered on one connection before it stops reading
MAX_HEAD_BYTES = 64 * 1024  # request line + headers; beyond it the request is refused
HEAD_TIMEOUT_S = 10.0  # first byte of a request -> end of its headers
BODY_TIMEOUT_S = 60.0  # end of the headers -> end of the body (16 MiB at >= 280 KB/s)
KEEPALIVE_TIMEOUT_S = 75.0  # an idle connection (no request being read) is closed after this
LINGER_S = 1.0  # after an error answer, input is read and dropped this long before the close


@dataclass(slots=True)
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    received_t: float  # perf_counter() when the request's first bytes were parsed
    too_large: bool = False  # the body exceeded the limit and was dropped (body is b"")
    body_size: int = 0


@dataclass(slots=True, frozen=True)
class HttpResponse:
    status: int
    body: bytes
    content_type: bytes = JSON
    headers: tuple[tuple[str, str], ...] = ()


class Deferred:
    """An answer known later. The first ``resolve`` wins; later ones are ignored."""

    __slots__ = ("response", "_sink")

    def __init__(self) -> None:
        self.response: HttpResponse | None = None
        self._sink: Callable[[HttpResponse], None] | None = None

    def done(self) -> bool:
        return self.response is not None

    def resolve(self, response: HttpResponse) -> None:
        if self.response is not None:
            return
        self.response = response
        sink, self._sink = self._sink, None
        if sink is not None:
            sink(response)

    def then(self, sink: Callable[[HttpResponse], None]) -> None:
        """Call ``sink`` with the answer: now if it is known, else when it is resolved."""
        if self.response is not None:
            sink(self.response)
        else:
            self._sink = sink


Handler = Callable[[HttpRequest], "HttpResponse | Deferred"]

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_HEAD = b"HTTP/1.1 %d %s\r\nServer: kairos\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n"


def encode_response(resp: HttpResponse, keep_alive: bool, head_only: bool = False) -> bytes:
    """Status line, headers and (unless answering HEAD) the body, ready for one write."""
    extra = b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in resp.headers)
    head = _HEAD % (
        resp.status,
        _REASONS.get(resp.status, b"Unknown"),
        resp.content_type,
        len(resp.body),
        extra,
        b"" if keep_alive else b"Connection: close\r\n",
    )
    return head if head_only else head + resp.body


class _Connection(asyncio.Protocol):
    """One client connection: parse, hand complete requests to the handler, answer in order."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._head_bytes = 0
        self._started_t = 0.0
        self.deadline_t: float | None = None  # perf_counter() by which the request must be read
        self._expired = False  # missed a deadline: answer 408 once earlier answers are out
        self._discarding = False  # an error was answered; input is dropped until the close
        self._eof = False  # the client half-closed: close once its answers are written
        self.active_t = time.monotonic()  # last time bytes arrived (idle connections close)
        self._waiting: collections.deque[tuple[HttpRequest, bool]] = collections.deque()
        self._busy = False  # an answer is being produced for the head of the line
        self._paused = False
        self._closing = False

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._server.connections.add(self)

    def eof_received(self) -> bool:
        """The client finished sending (a half-close): answer what it asked, then close.

        Returning True keeps the transport open for the answers still being produced.
        """
        self._eof = True
        return bool(self._busy or self._waiting)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._closing = True
        self._waiting.clear()

    def data_received(self, data: bytes) -> None:
        if self._discarding:  # answered with an error and closing: drop the rest
            return
        self.active_t = time.monotonic()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(b"protocol upgrades are not supported.")
        except _HeadTooLarge:
            self._fail(f"request line and headers exceed {MAX_HEAD_BYTES} bytes.".encode())
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):  # raised inside a parser callback
                self._fail(f"request line and headers exceed {MAX_HEAD_BYTES} bytes.".encode())
            else:
                self._fail(f"malformed HTTP request ({exc}).".encode())

    # --- parser callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._started_t = time.perf_counter()
        self.deadline_t = self._started_t + self._server.head_timeout_s
        self._url = b""
        self._headers = {}
        self._body = []
        self._size = 0
        self._head_bytes = 0

    def _count_head(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > MAX_HEAD_BYTES:
            raise _HeadTooLarge

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        old = self._headers.get(key)
        self._headers[key] = text if old is None else f"{old}, {text}"

    def on_headers_complete(self) -> None:
        self.deadline_t = time.perf_counter() + self._server.body_timeout_s
        if self._headers.get("expect", "").lower() == "100-continue" and self.transport:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size <= self._server.max_body_bytes:
            self._body.append(body)
        elif self._body:
            self._body = []  # over the limit: keep reading, stop keeping

    def on_message_complete(self) -> None:
        self.deadline_t = None
        parsed = httptools.parse_url(self._url)
        too_large = self._size > self._server.max_body_bytes
        request = HttpRequest(
            self._parser.get_method().decode("latin-1"),
            parsed.path.decode("latin-1"),
            self._headers,
            b"" if too_large else b"".join(self._body),
            self._started_t,
            too_large,
            self._size,
        )
        self._body = []
        self._waiting.append((request, self._parser.should_keep_alive()))
        if len(self._waiting) > MAX_PIPELINED and self.transport and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        if not self._busy:
            self._next()

    # --- answering --------------------------------------------------------------------------

    def _next(self) -> None:
        while self._waiting and not self._closing:
            request, keep_alive = self._waiting[0]
            try:
                result = self._server.handler(request)
            except Exception as exc:  # a handler bug: answer 500, keep serving, say why
                traceback.print_exc(file=sys.stderr)
                result = HttpResponse(
                    500, f'{{"error": "internal error: {type(exc).__name__}"}}'.encode()
                )
            if isinstance(result, HttpResponse):
                self._waiting.popleft()
                self._write(result, keep_alive, request.method == "HEAD")
                continue
            self._busy = True
            result.then(self._answered)
            return
        self._resume_reading()

    def _answered(self, resp: HttpResponse) -> None:
        """Write a deferred answer now (called from inside whoever resolved it)."""
        self._busy = False
        if self._closing:
            return
        request, keep_alive = self._waiting.popleft()
        self._write(resp, keep_alive, request.method == "HEAD")
        if self._waiting:
            # Pipelined requests wait for the next loop pass: the resolver is mid-callback
            # (the router in the middle of a completion) and must not be re-entered.
            asyncio.get_running_loop().call_soon(self._next)
        else:
            self._resume_reading()

    def _resume_reading(self) -> None:
        """Read again once the pipelined backlog that paused the connection is answered."""
        if self._eof and self.transport is not None and not self._closing:
            self._closing = True  # nothing more can come: every answer is out
            self.transport.close()
            return
        if self._expired:
            self._fail(b"the request was not received in time.", status=408)
            return
        if self._paused and self.transport and not self._closing:
            self._paused = False
            self.transport.resume_reading()

    def _write(self, resp: HttpResponse, keep_alive: bool, head_only: bool = False) -> None:
        transport = self.transport
        # A client that went away gets nothing; the write must not raise into the resolver.
        if transport is None or self._closing or transport.is_closing():
            return
        keep_alive = keep_alive and not self._server.closing
        transport.write(encode_response(resp, keep_alive, head_only))
        if not keep_alive:
            self._closing = True
            transport.close()

    def _fail(self, message: bytes, status: int = 400) -> None:
        transport = self.transport
        if transport is not None and not self._closing:
            body = b'{"error": "' + message.replace(b'"', b"'") + b'"}'
            self._closing = True
            transport.write(encode_response(HttpResponse(status, body), keep_alive=False))
            self._linger_close(transport)

    def _linger_close(self, transport: asyncio.Transport) -> None:
        """Close without losing the answer just written: closing a socket that still holds
        unread client bytes sends a reset, which can destroy the answer in flight. So
        half-close, read and drop whatever else arrives, and close a moment later."""
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._discarding = True
        if self._paused:
            self._paused = False
            transport.resume_reading()
        asyncio.get_running_loop().call_later(LINGER_S, transport.close)

    def expire(self) -> None:
        """The request being read missed its deadline: stop reading; answer 408 and close
        once the answers to earlier (pipelined) requests are written."""
        if self._closing or self.transport is None:
            return
        self.deadline_t = None
        self._expired = True
        if not self._paused:
            self._paused = True
            self.transport.pause_reading()
        if not self._busy and not self._waiting:
            self._resume_reading()

    def close_if_idle(self, idle_since: float | None = None) -> None:
        """Close the connection if no answer is pending (and, given ``idle_since``, no bytes
        arrived after that monotonic time)."""
        if self._busy or self._waiting or self.transport is None or self._closing:
            return
        if idle_since is None or self.active_t < idle_since:
            self._closing = True
            self.transport.close()


class _HeadTooLarge(Exception):
    pass


class HttpServer:
    """Serves ``handler`` on ``host:port`` (0 = any free port).

    A keep-alive connection with nothing pending that has sent nothing for
    ``keepalive_timeout_s`` is closed, and a request whose head or body is not read within
    ``head_timeout_s`` / ``body_timeout_s`` gets 408 (checked about once a second), so
    neither idle nor slow clients can hold sockets forever.
    """

    def __init__(
        self,
        handler: Handler,
        max_body_bytes: int,
        keepalive_timeout_s: float = KEEPALIVE_TIMEOUT_S,
        head_timeout_s: float = HEAD_TIMEOUT_S,
        body_timeout_s: float = BODY_TIMEOUT_S,
    ) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes
        self.keepalive_timeout_s = keepalive_timeout_s
        self.head_timeout_s = head_timeout_s
        self.body_timeout_s = body_timeout_s
        self.connections: set[_Connection] = set()
        self.closing = False
        self._server: Any = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int, backlog: int = 2048) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._connection, host, port, backlog=backlog, reuse_address=True
        )
        bound = self._server.sockets[0].getsockname()
        self._sweeper = asyncio.ensure_future(self._sweep_idle())
        return str(bound[0]), int(bound[1])

    async def _sweep_idle(self) -> None:
        shortest = min(self.keepalive_timeout_s, self.head_timeout_s, self.body_timeout_s)
        period_s = min(1.0, shortest / 4)
        while True:
            await asyncio.sleep(period_s)
            cutoff = time.monotonic() - self.keepalive_timeout_s
            now = time.perf_counter()
            for conn in list(self.connections):
                if conn.deadline_t is not None and now > conn.deadline_t:
                    conn.expire()
                else:
                    conn.close_if_idle(idle_since=cutoff)

    def _connection(self) -> _Connection:
        return _Connection(self)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop listening; close connections once their answers are written."""
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        deadline = time.perf_counter() + grace_s
        while self.connections and time.perf_counter() < deadline:
            for conn in list(self.connections):
                conn.close_if_idle()
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
