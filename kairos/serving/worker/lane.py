"""A model worker's per-query path: receive into reused buffers, decode in place, and run the
model on a thread of its own while the next query is received and decoded.

Framed TCP, the same frames as ``kairos.serving.pool.transport`` (a 4-byte big-endian length,
then a frame: ``kairos.protocol.frames``), so a router's ``TcpLink`` talks to it unchanged.
What differs from the generic worker-side carrier, and why (docs/runtime.md, "A model
worker's per-query path", has the profile that led here):

- Each message is received straight into a ``bytearray`` taken from a small pool and given
  back once the query is answered, so in steady state no request buffer is allocated (a
  fresh multi-megabyte buffer costs page faults on every query), and nothing is copied out
  of it: the tensors are numpy views of the buffer (``decode_inputs``) and the model's
  tensors are ``torch.from_numpy`` views of those. The start of a message in its buffer is
  chosen so that the binary tensors land 8-byte aligned (numpy's fast loops need aligned
  data); when a message's layout changes, its payload is moved once within the buffer.
- The model runs on one compute thread (``ComputeLane``), queries in arrival order, one at a
  time. The event loop keeps receiving and decoding meanwhile, so a query sent while another
  runs waits decoded, and the model starts it as soon as the previous one is out. Whoever
  sends decides whether to keep one waiting; the router's policy keeps counting one running
  query per instance either way.
- Every accepted query is answered in order: a request that fails to decode waits its turn
  and is answered 400; a model that raises is answered 500. Queries of a connection that
  closed while they waited are not run (nobody is left to answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from kairos.protocol.tensors import BadRequest
from kairos.serving.worker.handlers import ModelHandler, QueryTimes

_LENGTH = struct.Struct("!I")
MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # as the router's carrier refuses
ALIGN = 8  # the widest element a request may carry (INT64, FP64)


class ReceiveBuffers:
    """Request buffers, reused: a buffer goes back to the pool only when nothing views it.

    A user's model may keep a view of its inputs past the query (a cache, a lazy copy); a
    buffer still viewed cannot be resized, which ``give_back`` uses as an exact test, so
    such a buffer is left to its views rather than overwritten under them.
    """

    CHUNK = 64 * 1024  # room offered to a read before the message's length is known
    KEEP_BYTES = 32 * 1024 * 1024  # a larger buffer is dropped once its query is answered
    KEEP_COUNT = 4  # one receiving, one waiting, one running, one spare
    SLACK = 2 * ALIGN  # room to move a payload to an aligned start

    def __init__(self) -> None:
        self._free: list[bytearray] = []
        self.allocated = 0  # buffers made so far (a steady state makes none)

    def take(self, need: int, *, largest: bool = False) -> bytearray:
        """The smallest free buffer holding ``need`` bytes plus the slack (the largest, when
        the message's size is not known yet: it likely holds the message whole, which then
        needs no second buffer), or a new one."""
        need += self.SLACK
        fits = [b for b in self._free if len(b) >= need]
        if fits:
            best = (max if largest else min)(fits, key=len)
            self._free.remove(best)
            return best
        self.allocated += 1
        return bytearray(max(need, self.CHUNK))

    def give_back(self, buf: bytearray) -> None:
        if len(buf) > self.KEEP_BYTES or len(self._free) >= self.KEEP_COUNT:
            return
        try:  # raises while any memoryview or numpy array still shares the buffer
            last = buf.pop()
            buf.append(last)
        except BufferError:
            return
        self._free.append(buf)


class Query:
    """One request between its arrival and its answer (mutable: the lane fills it in)."""

    __slots__ = (
        "buf",
        "conn",
        "decode_ms",
        "deliver",
        "error",
        "header",
        "inputs",
        "loop",
        "times",
    )

    def __init__(self, header: dict[str, Any], deliver: Callable[[bytes], None]) -> None:
        self.header = header
        self.deliver = deliver  # called on the event loop with the reply frame
        self.conn: Connection | None = None
        self.buf: bytearray | None = None
        self.inputs: dict[str, np.ndarray] | None = None
        self.error: tuple[int, str] | None = None
        self.decode_ms = 0.0
        self.times: QueryTimes | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # where ``deliver`` runs


def reply_frame(query: Query, outputs: bytes, service_ms: float) -> bytes:
    """The reply as it goes on the wire, length prefix included, built in one join."""
    reply: dict[str, Any] = {
        "qid": query.header.get("qid"),
        "service_ms": service_ms,
        "code": 200 if query.error is None else query.error[0],
    }
    if query.error is not None:
        reply["error"] = query.error[1]
    elif query.times is not None:
        reply["prepare_ms"], reply["infer_ms"] = query.times.prepare_ms, query.times.infer_ms
    head = orjson.dumps(reply)
    size = _LENGTH.size + len(head) + len(outputs)
    return b"".join((_LENGTH.pack(size), _LENGTH.pack(len(head)), head, outputs))


class ComputeLane:
    """The one thread that runs the model: queries in arrival order, one at a time.

    ``submit`` is called on an event loop; the reply goes back to that loop through
    ``call_soon_threadsafe``. A lane serves every connection of its worker, so several
    routers still get one query at a time.
    """

    def __init__(self, handler: ModelHandler) -> None:
        self._handler = handler
        self._queue: queue.SimpleQueue[Query | None] = queue.SimpleQueue()
        self.served = 0
        self.skipped = 0  # queries whose connection closed while they waited
        self._thread = threading.Thread(target=self._run, name="kairos-compute", daemon=True)
        self._thread.start()

    def submit(self, query: Query) -> None:
        query.loop = asyncio.get_running_loop()
        self._queue.put(query)

    @property
    def waiting(self) -> int:
        """Queries submitted and not yet taken by the compute thread."""
        return self._queue.qsize()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Finish the query under way and end the thread: torch aborts the process at exit
        ("terminate called without an active exception") if a thread that ran a model is
        still alive then."""
        if not self._thread.is_alive():
            return
        self._queue.put(None)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while (query := self._queue.get()) is not None:
            loop = query.loop
            assert loop is not None
            if query.conn is not None and query.conn.closed:
                self.skipped += 1
                _call_soon(loop, _drop, query)
                continue
            reply = self._answer(query)
            self.served += 1
            _call_soon(loop, _finish, query, reply)

    def _answer(self, query: Query) -> bytes:
        t0 = time.perf_counter()
        outputs = b"[]"
        if query.error is None and query.inputs is not None:
            try:
                outputs, query.times = self._handler.compute(query.inputs, query.decode_ms)
            except BadRequest as exc:
                query.error = (400, str(exc))
            except Exception as exc:  # the user's model failed: an answer, not a dead worker
                query.error = (500, f"model raised {type(exc).__name__}: {exc}")
        query.inputs = None  # the buffer's views go before the buffer goes back
        service_ms = query.decode_ms + (time.perf_counter() - t0) * 1000.0
        return reply_frame(query, outputs, service_ms)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed: nobody is left to answer
        loop.call_soon_threadsafe(fn, *args)


def _drop(query: Query) -> None:
    query.inputs = None
    if query.conn is not None and query.buf is not None:
        query.conn.buffers.give_back(query.buf)


def _finish(query: Query, reply: bytes) -> None:
    _drop(query)
    query.deliver(reply)


def decode_into(query: Query, handler: ModelHandler, payload: memoryview) -> None:
    """Decode ``payload`` (views of its buffer) into ``query``; a bad request is kept as its
    400 answer, given in turn."""
    t0 = time.perf_counter()
    try:
        query.inputs = handler.decode(payload, query.header.get("json_length"))
    except BadRequest as exc:
        query.error = (400, str(exc))
    except (ValueError, TypeError, KeyError) as exc:  # a frame no router would send
        query.error = (400, f"request could not be decoded ({type(exc).__name__}: {exc})")
    query.decode_ms = (time.perf_counter() - t0) * 1000.0


Accept = Callable[["Connection", bytearray, int, int], None]


class Connection(asyncio.BufferedProtocol):
    """One router connection: messages received whole into pooled buffers, handed to
    ``accept(conn, buf, start, stop)`` (``buf[start:stop]`` is the frame)."""

    def __init__(self, accept: Accept, buffers: ReceiveBuffers) -> None:
        self._accept = accept
        self.buffers = buffers
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buf: bytearray | None = None
        self._start = 0  # where the message under way starts in ``_buf``
        self._end = 0  # end of the bytes received
        self._need = 0  # the message's bytes with its length prefix; 0 = not known yet
        self.pad = 0  # start offset that aligned the last message's tensors

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def get_buffer(self, sizehint: int) -> memoryview:
        buf = self._buf
        if buf is None:
            buf = self._buf = self.buffers.take(ReceiveBuffers.CHUNK, largest=True)
            self._start = self._end = self.pad
        start, end, need = self._start, self._end, self._need
        if need and len(buf) < start + need + ReceiveBuffers.SLACK:
            grown = self.buffers.take(self.pad + need)
            grown[self.pad : self.pad + end - start] = memoryview(buf)[start:end]
            self.buffers.give_back(buf)
            buf = self._buf = grown
            self._start, self._end = self.pad, self.pad + end - start
            start, end = self._start, self._end
        # Offer exactly the rest of the message once its length is known: the next message
        # then starts in a buffer of its own, with nothing to move.
        stop = start + need if need else len(buf) - ReceiveBuffers.SLACK
        return memoryview(buf)[end:stop]

    def buffer_updated(self, nbytes: int) -> None:
        self._end += nbytes
        while self._buf is not None:
            buf, start, end = self._buf, self._start, self._end
            if not self._need:
                if end - start < _LENGTH.size:
                    return
                (n,) = _LENGTH.unpack_from(buf, start)
                if n > MAX_MESSAGE_BYTES:  # the stream cannot be resynchronised
                    self._buf = None
                    if self.transport is not None:
                        self.transport.close()
                    return
                self._need = _LENGTH.size + n
            stop = start + self._need
            if end < stop:
                return
            self._buf, self._need = None, 0
            if end > stop:  # the next message began in this read: it moves to its own buffer
                rest = end - stop
                nxt = self._buf = self.buffers.take(max(rest, ReceiveBuffers.CHUNK), largest=True)
                nxt[self.pad : self.pad + rest] = memoryview(buf)[stop:end]
                self._start, self._end = self.pad, self.pad + rest
            self._accept(self, buf, start + _LENGTH.size, stop)


def payload_view(
    conn: Connection, buf: bytearray, start: int, stop: int, data_at: int
) -> memoryview:
    """``buf[start:stop]`` as a view whose byte ``data_at`` (the first tensor byte) is aligned.

    When it is not, the payload moves once within the buffer's slack, and the connection
    starts its next message where this layout lands aligned.
    """
    address = np.frombuffer(buf, np.uint8, count=0).ctypes.data
    shift = -(address + start + data_at) % ALIGN
    if shift:
        whole = np.frombuffer(buf, np.uint8)
        whole[start + shift : stop + shift] = whole[start:stop]  # numpy handles the overlap
        conn.pad = (conn.pad + shift) % ALIGN
    return memoryview(buf)[start + shift : stop + shift]


class LaneServer:
    """The listening socket of a worker whose queries go through a ``ComputeLane``."""

    def __init__(self, server: asyncio.Server, on_stop: Callable[[], None]) -> None:
        self._server = server
        self._on_stop = on_stop

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()
        self._on_stop()


async def start_lane_server(
    host: str, port: int, accept: Accept, buffers: ReceiveBuffers, on_stop: Callable[[], None]
) -> tuple[LaneServer, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(accept, buffers), host, port)
    bound = server.sockets[0].getsockname()[1]
    return LaneServer(server, on_stop), int(bound)
