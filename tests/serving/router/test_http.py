"""The router's HTTP/1.1 server on raw sockets: keep-alive, pipelining, chunked bodies,
100-continue, the body limit and malformed requests (in-process, loopback)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from kairos.aio import run_event_loop
from kairos.serving.router.http import (
    MAX_PIPELINED,
    Deferred,
    HttpRequest,
    HttpResponse,
    HttpServer,
)

LIMIT = 1000


def echo(request: HttpRequest) -> HttpResponse | Deferred:
    """Answers what it saw; ``/slow`` answers later through a ``Deferred``, like inference."""
    doc = {
        "method": request.method,
        "path": request.path,
        "size": len(request.body),
        "too_large": request.too_large,
        "x": request.headers.get("x-tag"),
    }
    response = HttpResponse(200, orjson.dumps(doc))
    if request.path != "/slow":
        return response
    later = Deferred()
    asyncio.get_running_loop().call_later(0.05, later.resolve, response)
    return later


async def exchange(raw: bytes, n_answers: int) -> list[tuple[int, dict, bytes]]:
    """Send ``raw`` on one connection and read ``n_answers`` responses."""
    server = HttpServer(echo, LIMIT)
    host, port = await server.start("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(raw)
    out = []
    try:
        async with asyncio.timeout(10):
            for _ in range(n_answers):
                status_line = await reader.readline()
                headers = {}
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                status = int(status_line.split()[1]) if status_line else 0
                out.append((status, orjson.loads(body) if body else {}, status_line))
    finally:
        writer.close()
        await server.stop(grace_s=1.0)
    return out


def post(path: str, body: bytes, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


def test_pipelined_requests_are_answered_in_order_even_when_the_first_is_slow() -> None:
    raw = post("/slow", b"a" * 10, "X-Tag: first\r\n") + post("/fast", b"bb", "X-Tag: second\r\n")
    answers = run_event_loop(exchange(raw, 2))
    assert [a[1]["x"] for a in answers] == ["first", "second"]
    assert [a[1]["size"] for a in answers] == [10, 2]


def test_chunked_body_is_reassembled() -> None:
    raw = (
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    ((status, doc, _),) = run_event_loop(exchange(raw, 1))
    assert status == 200 and doc["size"] == 11


def test_expect_continue_gets_an_interim_answer() -> None:
    raw = post("/e", b"xyz", "Expect: 100-continue\r\n")
    (interim, final) = run_event_loop(exchange(raw, 2))
    assert interim[0] == 100 and final[0] == 200 and final[1]["size"] == 3


def test_oversized_body_is_read_dropped_and_flagged_for_the_handler() -> None:
    raw = post("/big", b"z" * (LIMIT + 1)) + post("/after", b"ok")
    big, after = run_event_loop(exchange(raw, 2))
    assert big[1]["too_large"] is True and big[1]["size"] == 0
    assert after[1] == {
        "method": "POST",
        "path": "/after",
        "size": 2,
        "too_large": False,
        "x": None,
    }


@pytest.mark.parametrize(
    "raw", [b"NOT HTTP AT ALL\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"]
)
def test_malformed_request_gets_400_and_the_connection_closes(raw: bytes) -> None:
    ((status, doc, _),) = run_event_loop(exchange(raw, 1))
    assert status == 400 and "malformed HTTP request" in doc["error"]


def test_oversized_headers_are_refused() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n"
    ((status, doc, _),) = run_event_loop(exchange(raw, 1))
    assert status == 400 and "exceed 65536 bytes" in doc["error"]


def test_idle_keepalive_connections_are_closed() -> None:
    async def idle_then_read() -> tuple[bytes, bytes]:
        server = HttpServer(echo, LIMIT, keepalive_timeout_s=0.2)
        host, port = await server.start("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(post("/once", b"x"))
        try:
            async with asyncio.timeout(10):
                first = await reader.readuntil(b"}")
                rest = await reader.read()  # b"" once the server closes the idle connection
        finally:
            writer.close()
            await server.stop(grace_s=1.0)
        return first, rest

    first, rest = run_event_loop(idle_then_read())
    assert first.startswith(b"HTTP/1.1 200") and rest == b""


def test_an_answer_for_a_client_that_left_is_dropped_quietly() -> None:
    async def leave_early() -> bool:
        later = Deferred()
        server = HttpServer(lambda request: later, LIMIT)
        host, port = await server.start("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(post("/slow", b"x"))
        await asyncio.sleep(0.05)
        writer.close()
        await asyncio.sleep(0.05)  # the server sees the connection go
        later.resolve(HttpResponse(200, b"{}"))  # must not raise into the resolver
        await server.stop(grace_s=1.0)
        return later.done()

    assert run_event_loop(leave_early()) is True


def test_a_long_pipeline_pauses_reading_and_is_answered_in_full() -> None:
    n = MAX_PIPELINED + 8  # beyond the backlog at which the connection stops reading
    raw = post("/slow", b"", "X-Tag: 0\r\n") + b"".join(
        post("/fast", b"", f"X-Tag: {k}\r\n") for k in range(1, n)
    )
    answers = run_event_loop(exchange(raw, n))
    assert [a[1]["x"] for a in answers] == [str(k) for k in range(n)]


async def trickle(pieces: list[bytes], gap_s: float, **timeouts: float) -> bytes:
    """Send ``pieces`` one every ``gap_s`` seconds; return all the server wrote back until it
    closed the connection."""
    server = HttpServer(echo, LIMIT, **timeouts)
    host, port = await server.start("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(host, port)

    async def send() -> None:
        for piece in pieces:
            if writer.is_closing():
                return
            writer.write(piece)
            await asyncio.sleep(gap_s)

    sender = asyncio.ensure_future(send())
    try:
        async with asyncio.timeout(10):
            answer = await reader.read()  # until the server closes
    finally:
        sender.cancel()
        writer.close()
        await server.stop(grace_s=1.0)
    return answer


def test_a_head_sent_a_byte_at_a_time_is_cut_off_with_408() -> None:
    head = post("/x", b"abc")
    pieces = [head[k : k + 1] for k in range(len(head))]  # 0.1 s per byte: ~5 s for the head
    answer = run_event_loop(trickle(pieces, 0.1, head_timeout_s=0.4))
    # Without the deadline the head would complete after ~5 s and be answered 200.
    assert answer.startswith(b"HTTP/1.1 408") and b"Connection: close" in answer


def test_a_body_sent_a_byte_at_a_time_is_cut_off_with_408() -> None:
    head = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    pieces = [head] + [b"z"] * 100
    answer = run_event_loop(trickle(pieces, 0.1, body_timeout_s=0.4))
    assert answer.startswith(b"HTTP/1.1 408")


def test_a_request_within_its_deadlines_is_answered_and_earlier_answers_come_first() -> None:
    # A slow (deferred) answer is pending while the next pipelined request trickles in too
    # slowly: the client gets the first answer, then the 408.
    first = post("/slow", b"a")
    second = post("/x", b"bb")
    pieces = [first] + [second[k : k + 1] for k in range(len(second))]
    answer = run_event_loop(trickle(pieces, 0.1, head_timeout_s=0.4))
    assert answer.startswith(b"HTTP/1.1 200") and answer.count(b"HTTP/1.1 ") == 2
    assert b"HTTP/1.1 408" in answer


def test_a_client_that_half_closes_still_gets_its_deferred_answer() -> None:
    async def half_close() -> bytes:
        server = HttpServer(echo, LIMIT)
        host, port = await server.start("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(post("/slow", b"abc"))  # answered 50 ms later, through a Deferred
        writer.write_eof()
        try:
            async with asyncio.timeout(10):
                return await reader.read()  # the answer, then the server's close
        finally:
            writer.close()
            await server.stop(grace_s=1.0)

    answer = run_event_loop(half_close())
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"}")
