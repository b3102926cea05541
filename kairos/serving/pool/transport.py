"""Router-to-worker carriers: framed TCP (default) and gRPC; both carry the same frames.

``tcp``: one persistent TCP connection per worker; every message is a 4-byte big-endian
length followed by a frame (see ``kairos.protocol.frames.frame``). Request frames carry ``op``
("describe" or "infer"). Measured on the 2-core development machine, a round trip costs
about 80 us of CPU (both ends) against about 250 us for a gRPC bidirectional stream and 650 us
for a gRPC unary call, and the router's ceiling depends on exactly that (docs/runtime.md).

``grpc``: the ``kairos.v1.Worker`` service with generic byte handlers (no protoc step):
``Describe`` (unary), ``Serve`` (a bidirectional stream held open, one query in flight) and
``Infer`` (unary, for ad-hoc clients). Use it where standard tooling (proxies with TLS,
grpcurl, service meshes) matters more than the per-query CPU.

The worker serves one query at a time whatever the carrier (a lock, or a model's compute
lane). Both carriers offer the same call, ``start_call(message, on_reply)``: the framed-TCP
one writes at once and calls back from ``buffer_updated`` (no task per query); gRPC's asyncio
API has no callback form, so its ``start_call`` runs one small task per query that awaits the
stream and then calls back. The router has one dispatch path for both. Only the framed-TCP
link may carry a second call before the first is answered (``pipelines``): its worker answers
a connection's queries in the order they came, so replies are matched to calls first in,
first out. The router uses that to keep one query waiting at a model worker (docs/runtime.md,
"Keeping one query waiting at the worker").
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from kairos.protocol.frames import DESCRIBE, GRPC_OPTIONS, SERVE, SERVICE, frame, split_frame
from kairos.registry import Registry

if TYPE_CHECKING:
    import grpc

_LENGTH = struct.Struct("!I")
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


class WorkerLost(Exception):
    """A worker's connection ended or failed; the instance must be marked down."""


OnReply = Callable[[bytes | BaseException], None]


class Link(Protocol):
    address: str
    pipelines: bool  # may carry a call before the previous one is answered (replies in order)

    async def open(self, timeout_s: float) -> dict[str, Any]: ...

    def start_call(self, message: bytes, on_reply: OnReply) -> None: ...

    async def call(self, message: bytes, timeout_s: float) -> bytes: ...

    async def close(self) -> None: ...


class FrameBuffer:
    """Splits a byte stream into length-prefixed messages, received straight into one buffer.

    For ``asyncio.BufferedProtocol``: the event loop ``recv_into``s the view ``get_buffer``
    returns, and ``updated`` returns the messages completed. Compared with ``data_received``
    (a new ``bytes`` of at most 256 KiB per read, appended to a buffer, then sliced out twice)
    a message is copied once, and once its length is known the rest of it arrives in as few
    reads as the socket allows; copies of fresh memory are what a large request costs
    (docs/runtime.md, "Workers"). A length above ``MAX_MESSAGE_BYTES`` is refused before
    anything is allocated for it; the buffer shrinks back after a message larger than
    ``KEEP_BYTES``.
    """

    CHUNK = 256 * 1024  # room offered to a read when no message is under way
    KEEP_BYTES = 32 * 1024 * 1024  # a larger buffer is dropped once its message is out

    def __init__(self) -> None:
        self._buf = bytearray(self.CHUNK)
        self._start = 0  # first byte not yet handed out
        self._end = 0  # end of the bytes received

    def get_buffer(self) -> memoryview:
        """Room for the next read: the rest of the message under way, or a chunk."""
        buf, start, end = self._buf, self._start, self._end
        if start:  # no view of the buffer is alive here: move the partial message down
            buf[: end - start] = buf[start:end]
            end -= start
            self._start, self._end = 0, end
        if end == 0 and len(buf) > self.KEEP_BYTES:
            buf = self._buf = bytearray(self.CHUNK)
        need = end + self.CHUNK
        if end >= _LENGTH.size:  # (a length over the limit was refused in ``updated``)
            length = min(_LENGTH.unpack_from(buf)[0], MAX_MESSAGE_BYTES)
            need = max(need, _LENGTH.size + length)
        if len(buf) < need:
            grown = bytearray(need)
            grown[:end] = buf[:end]
            buf = self._buf = grown
        return memoryview(buf)[end:]

    def updated(self, nbytes: int) -> list[bytes]:
        """Account for ``nbytes`` received; the messages now complete (ValueError if a
        length is over the limit)."""
        self._end += nbytes
        buf, start, end = self._buf, self._start, self._end
        out = []
        while end - start >= _LENGTH.size:
            (n,) = _LENGTH.unpack_from(buf, start)
            if n > MAX_MESSAGE_BYTES:
                self._start = self._end = 0  # the stream is dropped: nothing is kept for it
                raise ValueError(f"message of {n} bytes exceeds {MAX_MESSAGE_BYTES}")
            stop = start + _LENGTH.size + n
            if stop > end:
                break
            with memoryview(buf) as view:
                out.append(bytes(view[start + _LENGTH.size : stop]))
            start = stop
        self._start, self._end = (0, 0) if start == end else (start, end)
        return out


class _ClientProtocol(asyncio.BufferedProtocol):
    """Router side of one worker connection: the outstanding calls' callbacks, oldest first
    (the worker answers in order); each reply goes to its callback straight from
    ``buffer_updated`` (no task or future per query)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[OnReply] = deque()
        self._frames = FrameBuffer()
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._frames.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        try:
            messages = self._frames.updated(nbytes)
        except ValueError as exc:
            self._fail(WorkerLost(f"bad frame from the worker ({exc})"))
            if self.transport is not None:
                self.transport.close()  # the stream cannot be resynchronised
            return
        waiting = self.waiting
        for message in messages:
            if waiting:
                waiting.popleft()(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(WorkerLost("the worker closed its connection"))

    def _fail(self, exc: BaseException) -> None:
        waiting = self.waiting
        while waiting:
            waiting.popleft()(exc)


class TcpLink:
    """Persistent framed-TCP connection to one worker (asyncio protocol: no stream layer)."""

    pipelines = True

    def __init__(self, address: str) -> None:
        self.address = address
        self._proto: _ClientProtocol | None = None

    async def open(self, timeout_s: float) -> dict[str, Any]:
        host, _, port = self.address.rpartition(":")
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout_s):
            _, proto = await loop.create_connection(_ClientProtocol, host.strip("[]"), int(port))
            self._proto = proto
            reply = await self.call(frame({"op": "describe"}), timeout_s)
        header, _ = split_frame(reply)
        return header

    def start_call(self, message: bytes, on_reply: OnReply) -> None:
        """Send ``message`` now; ``on_reply`` later gets the reply or a ``WorkerLost``.

        The router's hot path: the write happens inside the scheduling decision, and the
        reply is handled inside ``buffer_updated``, so a query costs no task, future or
        extra event-loop pass on either side. The caller owns the timeout.
        """
        proto = self._proto
        if proto is None or proto.lost or proto.transport is None:
            raise WorkerLost("no open connection")
        proto.waiting.append(on_reply)
        proto.transport.write(_LENGTH.pack(len(message)) + message)

    async def call(self, message: bytes, timeout_s: float) -> bytes:
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def on_reply(result: bytes | BaseException) -> None:
            if waiter.done():
                return
            if isinstance(result, BaseException):
                waiter.set_exception(result)
            else:
                waiter.set_result(result)

        self.start_call(message, on_reply)
        async with asyncio.timeout(timeout_s):
            return await waiter

    async def close(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.transport.close()


class GrpcLink:
    """gRPC channel plus one long-lived ``Serve`` stream to one worker."""

    pipelines = False  # a task per call: two calls' reads on the stream could cross

    def __init__(self, address: str) -> None:
        self.address = address
        self._channel: grpc.aio.Channel | None = None  # grpc is imported only when used
        self._stream: Any = None
        self._tasks: set[asyncio.Task[bytes]] = set()

    async def open(self, timeout_s: float) -> dict[str, Any]:
        import grpc

        channel = grpc.aio.insecure_channel(self.address, options=GRPC_OPTIONS)
        try:
            raw = await channel.unary_unary(DESCRIBE)(b"", timeout=timeout_s, wait_for_ready=True)
        except BaseException:
            await channel.close(grace=None)
            raise
        self._channel = channel
        self._stream = channel.stream_stream(SERVE)()
        return dict(orjson.loads(raw))

    def start_call(self, message: bytes, on_reply: OnReply) -> None:
        """Send ``message`` on the stream; ``on_reply`` gets the reply or the failure."""
        if self._stream is None:
            raise WorkerLost("no open stream")
        task = asyncio.ensure_future(self._exchange(message))
        self._tasks.add(task)

        def done(t: asyncio.Task[bytes]) -> None:
            self._tasks.discard(t)
            if not t.cancelled():
                exc = t.exception()
                on_reply(t.result() if exc is None else WorkerLost(f"gRPC call failed ({exc!r})"))

        task.add_done_callback(done)

    async def _exchange(self, message: bytes) -> bytes:
        stream = self._stream
        if stream is None:
            raise WorkerLost("no open stream")
        await stream.write(message)
        reply = await stream.read()
        import grpc

        if reply is grpc.aio.EOF:
            raise WorkerLost("the worker closed its stream")
        return bytes(reply)

    async def call(self, message: bytes, timeout_s: float) -> bytes:
        async with asyncio.timeout(timeout_s):
            return await self._exchange(message)

    async def close(self) -> None:
        stream, channel = self._stream, self._channel
        self._stream = self._channel = None
        for task in list(self._tasks):
            task.cancel()
        if stream is not None:
            stream.cancel()
        if channel is not None:
            await channel.close(grace=None)


# --- worker side ----------------------------------------------------------------------------

Handle = Callable[[bytes], Awaitable[bytes]]
Describe = Callable[[], dict[str, Any]]


class Server(Protocol):
    async def stop(self) -> None: ...


class _TcpServer:
    def __init__(self, server: asyncio.Server) -> None:
        self._server = server

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()


class _GrpcServer:
    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    async def stop(self) -> None:
        await self._server.stop(grace=2.0)


class _ServerProtocol(asyncio.BufferedProtocol):
    """Worker side of one router connection; queries on it are answered in order."""

    def __init__(self, handle: Handle, describe: Describe) -> None:
        self._handle = handle
        self._describe = describe
        self._frames = FrameBuffer()
        self._transport: asyncio.Transport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._frames.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        try:
            messages = self._frames.updated(nbytes)
        except ValueError:
            if self._transport is not None:
                self._transport.close()
            return
        for message in messages:
            task = asyncio.ensure_future(self._answer(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, message: bytes) -> None:
        header, _ = split_frame(message)
        reply = (
            frame(self._describe())
            if header.get("op") == "describe"
            else (await self._handle(message))
        )
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_LENGTH.pack(len(reply)) + reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


async def start_tcp_server(
    host: str, port: int, handle: Handle, describe: Describe
) -> tuple[Server, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _ServerProtocol(handle, describe), host, port)
    bound = server.sockets[0].getsockname()[1]
    return _TcpServer(server), int(bound)


async def start_grpc_server(
    host: str, port: int, handle: Handle, describe: Describe
) -> tuple[Server, int]:
    import grpc

    async def describe_rpc(request: bytes, context: Any) -> bytes:
        return orjson.dumps(describe())

    async def infer_rpc(request: bytes, context: Any) -> bytes:
        return await handle(request)

    async def serve_rpc(requests: Any, context: Any) -> Any:
        async for request in requests:
            yield await handle(request)

    generic = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Describe": grpc.unary_unary_rpc_method_handler(describe_rpc),
            "Infer": grpc.unary_unary_rpc_method_handler(infer_rpc),
            "Serve": grpc.stream_stream_rpc_method_handler(serve_rpc),
        },
    )
    server = grpc.aio.server(options=GRPC_OPTIONS)
    server.add_generic_rpc_handlers((generic,))
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind {host}:{port}")
    await server.start()
    return _GrpcServer(server), bound


@dataclass(frozen=True)
class Transport:
    """A carrier's two ends: the router's link and the worker's server."""

    link: Callable[[str], Link]
    serve: Callable[[str, int, Handle, Describe], Awaitable[tuple[Server, int]]]


TRANSPORTS: Registry[Transport] = Registry(
    "transport", "pass --transport tcp (framed TCP, the default) or grpc."
)
TRANSPORTS.add("tcp", Transport(TcpLink, start_tcp_server))
TRANSPORTS.add("grpc", Transport(GrpcLink, start_grpc_server))


def make_link(transport: str, address: str) -> Link:
    return TRANSPORTS.get(transport).link(address)
