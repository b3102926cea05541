"""An in-process worker pool and clock for driving the router without sockets or processes.

``FakePool`` implements ``WorkerPool``: a dispatch is recorded and completes when the test
says so (``finish``), at the test's clock. With ``pipelined=True`` an instance also takes one
query behind the one it serves (``behind``; answered in order, as a model worker over framed
TCP). ``ManualClock`` is the clock the router reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kairos.catalog import Pool
from kairos.protocol.frames import frame, unframe
from kairos.scenario import Scenario
from kairos.serving.pool.base import OnReply, PoolListener, WorkerPool
from kairos.serving.router.config import RouterConfig
from kairos.serving.router.router import Router
from kairos.serving.worker.launch import WorkerSpec


@dataclass
class ManualClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Sent:
    instance: int
    qid: int
    batch: int
    on_reply: OnReply


@dataclass
class Answer:
    """Stands in for the HTTP ``Deferred``: records what the router answered."""

    response: Any = None

    def resolve(self, response: Any) -> None:
        assert self.response is None, "answered twice"
        self.response = response

    @property
    def status(self) -> int | None:
        """The answer's HTTP status; None while unanswered."""
        return None if self.response is None else self.response.status


@dataclass
class FakePool(WorkerPool):
    listener: PoolListener | None = None
    types: list[str] = field(default_factory=list)
    in_flight: dict[int, Sent] = field(default_factory=dict)
    log: list[Sent] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    healthy: set[int] = field(default_factory=set)
    pipelined: bool = False
    behind: dict[int, Sent] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.signature = None
        self.out_signature = None
        self.described = True

    async def start(self, listener: PoolListener, specs: list[WorkerSpec]) -> None:
        self.listener = listener
        await self.add(specs)

    async def add(self, specs: list[WorkerSpec]) -> list[int]:
        first = len(self.types)
        self.types += [s.instance_type for s in specs]
        ids = list(range(first, len(self.types)))
        for j in ids:
            self.up(j)
        return ids

    def up(self, j: int) -> None:
        assert self.listener is not None
        self.healthy.add(j)
        self.listener.instance_up(j)

    def down(self, j: int, blame: bool) -> None:
        assert self.listener is not None
        self.healthy.discard(j)
        self.in_flight.pop(j, None)
        self.behind.pop(j, None)
        self.listener.instance_down(j, "test", blame)

    async def remove(self, instances: list[int]) -> None:
        self.removed += instances
        self.healthy -= set(instances)

    def dispatch(self, j: int, message: bytes, timeout_s: float, on_reply: OnReply) -> None:
        header, _ = unframe(message)
        sent = Sent(j, int(header["qid"]), int(header["batch"]), on_reply)
        if j in self.in_flight:
            assert self.pipelined, f"instance {j} got a second query"
            assert j not in self.behind, f"instance {j} got a third query"
            self.behind[j] = sent
        else:
            self.in_flight[j] = sent
        self.log.append(sent)

    def pipelines(self, j: int) -> bool:
        return self.pipelined

    def finish(self, j: int, service_ms: float, code: int = 200) -> None:
        sent = self.in_flight.pop(j)
        if j in self.behind:  # the worker starts the waiting one before it answers
            self.in_flight[j] = self.behind.pop(j)
        sent.on_reply(frame({"qid": sent.qid, "service_ms": service_ms, "code": code}, b"[]"))

    def fail(self, j: int, reason: str, blame: bool) -> None:
        self.down(j, blame)

    def replay(self, j: int) -> bool:
        return True

    def healthy_instances(self) -> list[int]:
        return sorted(self.healthy)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"instance": j, "instance_type": t, "state": "up" if j in self.healthy else "down"}
            for j, t in enumerate(self.types)
        ]

    async def close(self) -> None:
        self.healthy.clear()


def fake_router(
    pool_text: str, *, pipelined: bool = False, **overrides: Any
) -> tuple[Router, FakePool]:
    """A dien router with the fcfs policy over a ``FakePool`` of ``pool_text``, on a manual
    clock; ``overrides`` are further ``RouterConfig`` fields."""
    fake = FakePool(pipelined=pipelined)
    cfg = RouterConfig(model="dien", pool=Pool.parse(pool_text), policy="fcfs", **overrides)
    return Router(cfg, Scenario.build("dien"), pool=fake, clock=ManualClock()), fake


def admit(router: Router, n: int, batch: int = 10) -> list[Answer]:
    """``n`` queries of ``batch`` admitted in order (qids 0, 1, ...); their answers."""
    answers = [Answer() for _ in range(n)]
    for a in answers:
        router.dispatcher.admit(b"", batch, None, a)
    return answers
