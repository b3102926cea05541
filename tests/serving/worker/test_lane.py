"""A model worker's per-query path (``kairos.serving.worker.lane``) over a real socket, in
process, with a small numpy model: replies in order, zero-copy aligned inputs, reused
buffers, failures answered, and queries of a closed connection not run."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest

from kairos.client.loadgen import BodyFactory
from kairos.protocol.frames import frame, unframe
from kairos.protocol.tensors import TensorSpec
from kairos.serving.pool.transport import TcpLink
from kairos.serving.worker.handlers import ModelHandler
from kairos.serving.worker.lane import Connection, start_lane_server
from kairos.serving.worker.launch import WorkerSpec
from kairos.serving.worker.service import WorkerService

SPECS = (TensorSpec("dense", "FP32", (-1, 3)), TensorSpec("ids", "INT32", (-1, 2)))


class Model:
    """Sums each row of ``dense``; records what it was given; ``hook`` runs first."""

    inputs = [s.as_dict() for s in SPECS]

    def __init__(self, hook: Callable[[int], None] | None = None) -> None:
        self.calls = 0
        self.seen: list[dict[str, Any]] = []
        self.hook = hook

    def __call__(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        if self.hook is not None:
            self.hook(self.calls)
        dense = arrays["dense"]
        self.seen.append({"view": received(dense), "aligned": dense.flags.aligned})
        return {"score": dense.sum(axis=1, keepdims=True)}


def received(arr: np.ndarray) -> bool:
    """Whether ``arr`` is a view of received bytes (not a copy numpy owns)."""
    while isinstance(arr.base, np.ndarray):
        arr = arr.base
    return isinstance(arr.base, memoryview | bytearray)


def message(qid: int, batch: int, seed: int = 0, pad: str = "") -> bytes:
    """A length-prefixed request frame, binary tensors; ``pad`` lengthens the JSON part (an
    id), which moves where the tensors start."""
    body, json_length = BodyFactory(SPECS, seed).binary_body(batch)
    if pad:
        doc = orjson.loads(body[:json_length])
        doc["id"] = pad
        head = orjson.dumps(doc)
        body, json_length = head + body[json_length:], len(head)
    framed = frame({"qid": qid, "batch": batch, "json_length": json_length}, body)
    return len(framed).to_bytes(4, "big") + framed


def expected(batch: int, seed: int = 0) -> list[float]:
    body, json_length = BodyFactory(SPECS, seed).binary_body(batch)
    dense = np.frombuffer(body, np.float32, count=batch * 3, offset=json_length)
    return dense.reshape(batch, 3).sum(axis=1).tolist()


async def replies(reader: asyncio.StreamReader, n: int) -> list[tuple[dict[str, Any], bytes]]:
    out = []
    for _ in range(n):
        size = int.from_bytes(await reader.readexactly(4), "big")
        out.append(unframe(await reader.readexactly(size)))
    return out


def serve(model: Model, scenario: Callable[..., Any]) -> Any:
    """Run ``scenario(port, service, conns)`` against a lane server for ``model``."""

    async def main() -> Any:
        service = WorkerService(WorkerSpec("local.full", "toy", mode="model"), ModelHandler(model))
        conns: list[Connection] = []

        def accept(conn: Connection, buf: bytearray, start: int, stop: int) -> None:
            if conn not in conns:
                conns.append(conn)
            service.accept(conn, buf, start, stop)

        server, port = await start_lane_server(
            "127.0.0.1", 0, accept, service.buffers, service.stop
        )
        try:
            async with asyncio.timeout(30):
                return await scenario(port, service, conns)
        finally:
            await server.stop()

    return asyncio.run(main())


def test_pipelined_queries_are_answered_in_order_a_bad_one_with_400_in_its_turn() -> None:
    model = Model()
    bad = orjson.dumps({"inputs": [{"name": "dense", "datatype": "FP32", "shape": [1, 3]}]})
    bad_frame = frame({"qid": 2, "batch": 1}, bad)

    async def scenario(port: int, service: WorkerService, conns: list[Connection]) -> Any:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            message(1, 4) + len(bad_frame).to_bytes(4, "big") + bad_frame + message(3, 5, seed=1)
        )
        got = await replies(reader, 3)
        writer.close()
        return got

    got = serve(model, scenario)
    assert [h["qid"] for h, _ in got] == [1, 2, 3]
    assert [h["code"] for h, _ in got] == [200, 400, 200]
    assert orjson.loads(got[0][1])[0]["data"] == pytest.approx(expected(4))
    assert orjson.loads(got[2][1])[0]["data"] == pytest.approx(expected(5, seed=1))
    assert model.calls == 2
    assert got[0][0]["service_ms"] >= got[0][0]["prepare_ms"] >= 0


def test_inputs_are_aligned_views_of_reused_buffers_and_the_router_link_works() -> None:
    model = Model()

    async def scenario(port: int, service: WorkerService, conns: list[Connection]) -> Any:
        link = TcpLink(f"127.0.0.1:{port}")
        described = await link.open(10.0)
        assert described["inputs"] == [s.as_dict() for s in SPECS]
        made = []
        # Each longer id moves the tensors' start by a byte: misaligned once per change.
        for qid, pad in enumerate(["", "", "x", "x", "xx", "xxx", "xxx", "", ""]):
            header, payload = unframe(await link.call(message(qid, 50, pad=pad)[4:], 10.0))
            assert header["code"] == 200 and header["qid"] == qid
            assert orjson.loads(payload)[0]["data"] == pytest.approx(expected(50))
            made.append(service.buffers.allocated)
        await link.close()
        return made

    made = serve(model, scenario)
    assert made[-1] == made[1]  # after the first queries no buffer is made per query
    assert len(model.seen) == 9 and all(s["view"] and s["aligned"] for s in model.seen)


def test_a_failing_model_is_a_500_and_the_query_waiting_behind_it_is_answered() -> None:
    def fail_first(call: int) -> None:
        if call == 1:
            raise RuntimeError("boom")

    model = Model(fail_first)

    async def scenario(port: int, service: WorkerService, conns: list[Connection]) -> Any:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(message(1, 3) + message(2, 3))
        got = await replies(reader, 2)
        writer.close()
        return got

    got = serve(model, scenario)
    assert [(h["qid"], h["code"]) for h, _ in got] == [(1, 500), (2, 200)]
    assert "RuntimeError: boom" in got[0][0]["error"]


def test_a_view_the_model_keeps_is_never_overwritten() -> None:
    kept: list[np.ndarray] = []

    class Keeper(Model):
        def __call__(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            kept.append(arrays["dense"])
            return super().__call__(arrays)

    async def scenario(port: int, service: WorkerService, conns: list[Connection]) -> Any:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for qid in range(4):
            writer.write(message(qid, 6, seed=qid))
            await replies(reader, 1)
        writer.close()

    serve(Keeper(), scenario)
    for seed, arr in enumerate(kept):
        assert arr.sum(axis=1).tolist() == pytest.approx(expected(6, seed=seed))


def held_first() -> tuple[Model, threading.Event, threading.Event]:
    """A model whose first call sets ``started`` and then waits (10 s at most) for
    ``release``, so the next query is received and waits behind it."""
    started, release = threading.Event(), threading.Event()

    def hold_first(call: int) -> None:
        if call == 1:
            started.set()
            release.wait(10)

    return Model(hold_first), started, release


def test_a_query_waiting_when_its_connection_closes_is_not_run() -> None:
    model, started, release = held_first()

    async def scenario(port: int, service: WorkerService, conns: list[Connection]) -> Any:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(message(1, 2) + message(2, 2))
        await asyncio.to_thread(started.wait, 10)
        lane = service.lane()
        while lane.waiting < 1:  # the second query is received, decoded and waiting
            await asyncio.sleep(0.01)
        writer.close()
        while not conns[0].closed:
            await asyncio.sleep(0.01)
        release.set()
        while lane.served + lane.skipped < 2:
            await asyncio.sleep(0.01)
        return lane.served, lane.skipped

    assert serve(model, scenario) == (1, 1)
    assert model.calls == 1


def test_the_router_link_carries_a_query_behind_another_and_fails_both_when_lost() -> None:
    """``TcpLink`` with two calls out (the router's --pipeline): each reply reaches its own
    callback, in order; a connection lost with calls out fails every one of them."""
    from kairos.serving.pool.transport import WorkerLost

    model, started, release = held_first()

    async def scenario(port: int, service: WorkerService, conns: list[Connection]) -> Any:
        link = TcpLink(f"127.0.0.1:{port}")
        await link.open(10.0)
        assert link.pipelines
        got: list[tuple[str, Any]] = []
        link.start_call(message(1, 4)[4:], lambda r: got.append(("first", r)))
        await asyncio.to_thread(started.wait, 10.0)  # the model runs query 1 ...
        link.start_call(message(2, 6)[4:], lambda r: got.append(("second", r)))
        lane = service.lane()
        while lane.waiting < 1:  # ... while query 2 is received and waits decoded
            await asyncio.sleep(0.01)
        assert got == []
        release.set()
        for _ in range(200):
            if len(got) == 2:
                break
            await asyncio.sleep(0.01)
        lost: list[Any] = []
        link.start_call(message(3, 2)[4:], lost.append)
        link.start_call(message(4, 2)[4:], lost.append)
        for conn in conns:  # the worker drops the connection with both calls out
            assert conn.transport is not None
            conn.transport.close()
        for _ in range(200):
            if len(lost) == 2:
                break
            await asyncio.sleep(0.01)
        await link.close()
        return got, lost

    got, lost = serve(model, scenario)
    assert [name for name, _ in got] == ["first", "second"]
    assert [unframe(r)[0]["qid"] for _, r in got] == [1, 2]
    assert orjson.loads(unframe(got[1][1])[1])[0]["data"] == pytest.approx(expected(6))
    assert len(lost) == 2 and all(isinstance(e, WorkerLost) for e in lost)
