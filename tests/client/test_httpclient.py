"""The one HTTP client: its response parser on every framing, bytes split anywhere, and the
blocking and pooled forms against a server that answers in chunks or until it closes."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from kairos.aio import run_event_loop
from kairos.client.http import HttpPool, ResponseReader, Target, request
from kairos.errors import ConfigError

LENGTH = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello"
CHUNKED = (
    b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
)
UNTIL_CLOSE = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\nbye now"


@pytest.mark.parametrize("step", [1, 2, 7, 1000])
def test_lengths_and_chunks_parse_whatever_the_split(step):
    reader = ResponseReader()
    data = LENGTH + CHUNKED
    for k in range(0, len(data), step):
        reader.feed(data[k : k + step])
    first, second = reader.done
    assert (first.status, first.body, first.headers["x-a"]) == (200, b"hello", "1")
    assert (second.status, second.body) == (404, b"abcdefg")
    assert reader.keep_alive


def test_a_body_ended_by_the_close_is_complete_at_finish():
    reader = ResponseReader()
    reader.feed(UNTIL_CLOSE)
    assert not reader.done
    reader.finish()
    assert reader.done[0].body == b"bye now" and not reader.keep_alive


def test_garbage_is_a_connection_error():
    with pytest.raises(ConnectionError, match="malformed HTTP response"):
        ResponseReader().feed(b"SMTP ready\r\n\r\n")


@pytest.mark.parametrize("url", ["ftp://x:1", "notaurl", "http://127.0.0.1:99999", "http://:80"])
def test_bad_urls_are_config_errors(url):
    with pytest.raises(ConfigError, match="http://HOST"):
        Target.parse(url)


@pytest.fixture
def canned() -> Iterator[tuple[str, list[bytes]]]:
    """A loopback server that answers each request on a connection with the next canned
    response (closing after a close-delimited one); yields its URL and the list to fill."""
    answers: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                while answers:
                    if not conn.recv(65536):
                        break
                    answer = answers.pop(0)
                    conn.sendall(answer)
                    if answer is UNTIL_CLOSE:
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", answers
    listener.close()


def test_blocking_request_reads_chunked_and_close_delimited_answers(canned):
    url, answers = canned
    answers += [CHUNKED, UNTIL_CLOSE]
    assert request(url + "/a").body == b"abcdefg"
    reply = request(url + "/b", body=b"{}")
    assert (reply.status, reply.text) == (503, "bye now")


def test_pooled_requests_reuse_a_keepalive_connection(canned):
    url, answers = canned
    answers += [LENGTH, CHUNKED]

    async def two() -> list[tuple[int, bytes]]:
        pool = HttpPool(url, timeout_s=5.0)
        try:
            out = []
            for _ in range(2):
                response = await pool.fetch("GET", "/x")
                out.append((response.status, response.body))
            return out
        finally:
            pool.close()

    assert run_event_loop(two()) == [(200, b"hello"), (404, b"abcdefg")]
