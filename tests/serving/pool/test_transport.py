"""The framed-TCP stream reader: messages come out whole, in order, however the stream is cut
into reads; a length over the limit is refused before anything is allocated for it."""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kairos.protocol.frames import frame, split_frame
from kairos.serving.pool.transport import (
    MAX_MESSAGE_BYTES,
    TRANSPORTS,
    FrameBuffer,
    WorkerLost,
    make_link,
)

LENGTH = struct.Struct("!I")


def stream_of(messages: list[bytes]) -> bytes:
    return b"".join(LENGTH.pack(len(m)) + m for m in messages)


def read_in_pieces(frames: FrameBuffer, data: bytes, cuts: list[int]) -> list[bytes]:
    """Feed ``data`` as the event loop would: each read fills at most the view offered and at
    most the next cut's worth of bytes."""
    out: list[bytes] = []
    pos, k = 0, 0
    while pos < len(data):
        view = frames.get_buffer()
        want = cuts[k % len(cuts)] if cuts else len(data)
        k += 1
        n = min(len(view), max(1, want), len(data) - pos)
        view[:n] = data[pos : pos + n]
        del view  # asyncio drops its view before asking for the next one
        pos += n
        out += frames.updated(n)
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=3000), max_size=12),
    st.lists(st.integers(min_value=1, max_value=5000), max_size=20),
)
def test_messages_come_out_whole_and_in_order(messages: list[bytes], cuts: list[int]) -> None:
    assert read_in_pieces(FrameBuffer(), stream_of(messages), cuts) == messages


def test_a_message_larger_than_a_chunk_arrives_in_few_reads() -> None:
    big = bytes(range(256)) * (3 * FrameBuffer.CHUNK // 256 + 7)
    frames = FrameBuffer()
    data = stream_of([big, b"next"])
    first = frames.get_buffer()
    assert len(first) == FrameBuffer.CHUNK  # length not known yet: one chunk of room
    first[:16] = data[:16]
    del first
    assert frames.updated(16) == []
    rest = frames.get_buffer()
    assert len(rest) >= len(big) + 4 - 16  # now room for the whole message at once
    n = min(len(rest), len(data) - 16)
    rest[:n] = data[16 : 16 + n]
    del rest
    got = frames.updated(n)
    assert got[0] == big  # the whole message in this second read
    assert got[1:] + read_in_pieces(frames, data[16 + n :], []) == [b"next"]


def test_an_oversized_length_is_refused_before_allocation() -> None:
    frames = FrameBuffer()
    view = frames.get_buffer()
    view[:4] = LENGTH.pack(MAX_MESSAGE_BYTES + 1)
    del view
    with pytest.raises(ValueError, match="exceeds"):
        frames.updated(4)
    assert len(frames.get_buffer()) == FrameBuffer.CHUNK  # nothing sized to the bad length


def test_the_buffer_shrinks_after_a_message_above_the_keep_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(FrameBuffer, "KEEP_BYTES", 1000)
    frames = FrameBuffer()
    big = b"x" * 5000
    assert read_in_pieces(frames, stream_of([big]), []) == [big]
    assert len(frames.get_buffer()) == FrameBuffer.CHUNK


def test_a_large_request_round_trips_over_loopback() -> None:
    """The router's link and a worker's server, end to end, with a payload of several reads."""
    payload = bytes(range(256)) * 8000  # 2 MB

    async def echo(message: bytes) -> bytes:
        header, view = split_frame(message)
        return frame({"qid": header["qid"], "size": len(view)}, bytes(view[-16:]))

    async def run() -> tuple[dict, bytes]:
        server, port = await TRANSPORTS.get("tcp").serve("127.0.0.1", 0, echo, lambda: {})
        link = make_link("tcp", f"127.0.0.1:{port}")
        try:
            await link.open(10.0)
            replies = [await link.call(frame({"qid": q}, payload), 10.0) for q in range(3)]
        finally:
            await link.close()
            await server.stop()
        header, tail = split_frame(replies[-1])
        return header, bytes(tail)

    header, tail = asyncio.run(run())
    assert header == {"qid": 2, "size": len(payload)}
    assert tail == payload[-16:]


def test_a_worker_sending_an_oversized_length_is_lost_not_waited_on() -> None:
    """The router's side: a reply whose length is over the limit fails the call at once (the
    instance goes down and its query is retried elsewhere) and the connection is closed."""

    async def bad_worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(4 + LENGTH.unpack(await reader.readexactly(4))[0] - 4)
        writer.write(LENGTH.pack(MAX_MESSAGE_BYTES + 1) + b"x" * 64)
        await writer.drain()
        await reader.read()  # until the router closes
        writer.close()

    async def run() -> bool:
        server = await asyncio.start_server(bad_worker, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        link = make_link("tcp", f"127.0.0.1:{port}")
        try:
            with pytest.raises(WorkerLost, match="bad frame"):
                await link.open(5.0)  # the describe call gets the bad reply
            proto = link._proto  # type: ignore[attr-defined]
            await asyncio.sleep(0.05)
            return bool(proto.transport.is_closing())
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(run())
