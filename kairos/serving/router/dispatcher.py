"""The live driver loop: queries in, the ``Driver``'s decisions out to the worker pool.

The dispatcher owns the queries the router accepted and has not answered (``Pending``). It
turns the runtime's events into ``Driver`` events on the router's clock (``RouterClock``: wall
seconds since start divided by the time scale) and carries out the starts each event returns
by sending the query to that instance's worker through the ``WorkerPool``:

* ``admit``: a validated request -> ``driver.arrive``;
* a worker's reply -> ``driver.complete`` (the answer goes out before the next decision);
* ``instance_down`` / ``instance_up`` (from the pool) -> ``driver.down`` / ``driver.up``;
* ``resize`` -> ``driver.add_instances`` + ``pool.add``, ``driver.retire`` + ``pool.remove``;
* with ``pipeline`` (model workers over framed TCP only): an instance whose query has run
  its estimated service time unanswered while others queue -> ``driver.complete`` early, so
  the policy's next query for it goes out and waits at the worker (``Pipeline``).

It knows nothing of HTTP: answers go to an ``AnswerSink`` (the front end). A query is failed
only when the failures it may have caused reach ``max_attempts`` (see ``pool.py`` on blame);
any other failure re-queues it, however often. A query whose instance was released early is
still the dispatcher's until its answer comes: if the worker fails first, it is re-queued
(or failed) with the one the worker was sent behind it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from kairos.catalog import Pool
from kairos.distributor.driver import Driver
from kairos.distributor.state import ClusterState
from kairos.errors import ConfigError
from kairos.protocol.frames import frame, split_frame
from kairos.serving.pool.base import WorkerPool
from kairos.serving.router.metrics import RouterMetrics
from kairos.serving.router.pipeline import Pipeline
from kairos.serving.router.traffic import TrafficWindow
from kairos.serving.settings import DispatchSettings
from kairos.serving.worker.launch import WorkerSpec
from kairos.workload import Query

OVERHEAD_WINDOW = 512  # recent queries whose round-trip overhead the router remembers
OVERHEAD_REFRESH = 64  # recompute the policy's overhead estimate every this many answers
TIMEOUT_QUANTILE = 0.99  # the hang timeout is a multiple of this quantile of service time


class RouterClock:
    """The policy's clock: wall seconds since the router started, divided by the time scale
    (profile seconds). One per router, made first: the dispatcher and the traffic view read
    the same start."""

    def __init__(self, wall: Callable[[], float], time_scale: float) -> None:
        self.wall = wall
        self.scale = time_scale if time_scale > 0 else 1.0
        self.t0 = wall()

    def profile_s(self, wall_t: float) -> float:
        return (wall_t - self.t0) / self.scale

    def now_s(self) -> float:
        return (self.wall() - self.t0) / self.scale


def active_pool(driver: Driver) -> Pool:
    """The instances the driver serves with, as a pool (retired ones left out)."""
    state = driver.state
    return Pool.of((state.instance_type[j], 1) for j in driver.active)


def resize_plan(
    state: ClusterState, active: list[int], target: Pool
) -> tuple[list[str], list[int]]:
    """The instance types to add and the instance ids to remove so that ``active`` matches
    ``target``; of each type, down instances go first, then idle ones, the busiest last."""
    added_types: list[str] = []
    removing: list[int] = []
    for t in dict.fromkeys([*target.types, *(state.instance_type[j] for j in active)]):
        have = [j for j in active if state.instance_type[j] == t]
        want = target.count(t)
        added_types += [t] * max(0, want - len(have))
        order = sorted(have, key=lambda j: (state.up[j], state.running[j] is not None))
        removing += order[: max(0, len(have) - want)]
    return added_types, removing


def hang_timeout_s(driver: Driver, itype: str, batch: int, s: DispatchSettings) -> float:
    """Wall seconds after which a query of ``batch`` on ``itype`` counts as hung: a multiple
    of the profiled p99 service time, plus a floor."""
    p99_ms = float(driver.scenario.profiles.get(itype).quantile_ms(batch, TIMEOUT_QUANTILE))
    return s.timeout_floor_s + s.timeout_p99_multiple * p99_ms / 1000.0 * s.time_scale


class OverheadWindow:
    """The worker round-trip overheads of the last ``OVERHEAD_WINDOW`` answers, and the
    estimate the policy is told (``DispatchSettings.overhead_factor``)."""

    def __init__(self, driver: Driver, settings: DispatchSettings, time_scale: float) -> None:
        self._driver = driver
        self._settings = settings
        self._scale = time_scale
        self._values = np.zeros(OVERHEAD_WINDOW)
        self._n = 0

    def note(self, overhead_s: float) -> None:
        """Keep ``overhead_s`` (wall); every ``OVERHEAD_REFRESH`` answers, re-estimate."""
        s = self._settings
        if s.overhead_factor <= 0:
            return
        self._values[self._n % OVERHEAD_WINDOW] = overhead_s
        self._n += 1
        if self._n % OVERHEAD_REFRESH == 0:
            window = self._values[: min(self._n, OVERHEAD_WINDOW)]
            wall_s = s.overhead_factor * float(np.quantile(window, s.overhead_quantile))
            self._driver.set_overhead_s(wall_s / self._scale)


class HangTimeouts:
    """Hang detection per (instance type, batch), cached: ``hang_timeout_s``."""

    def __init__(self, driver: Driver, settings: DispatchSettings) -> None:
        self._driver = driver
        self._settings = settings
        self._cache: dict[tuple[str, int], float] = {}

    def __call__(self, j: int, batch: int) -> float:
        key = (self._driver.state.instance_type[j], batch)
        t = self._cache.get(key)
        if t is None:
            t = self._cache[key] = hang_timeout_s(self._driver, *key, self._settings)
        return t


class Pending:
    """A query the router accepted and has not answered yet. ``reply`` is the front end's."""

    __slots__ = (
        "query",
        "body",
        "request_id",
        "reply",
        "arrival_t",
        "dispatch_t",
        "attempts",
        "blamed",
        "json_length",
        "received_t",
        "behind",
    )

    def __init__(
        self,
        query: Query,
        body: bytes,
        request_id: str | None,
        reply: Any,
        arrival_t: float,
        received_t: float,
        json_length: int | None,
    ) -> None:
        self.query = query
        self.body = body
        self.request_id = request_id
        self.reply = reply
        self.arrival_t = arrival_t
        self.received_t = received_t  # when its request's first bytes were parsed
        self.dispatch_t = arrival_t
        self.json_length = json_length
        self.attempts = 0  # times it was sent to a worker
        self.blamed = 0  # failures it may have caused
        self.behind = False  # sent while its instance's previous query was still out


@dataclass(frozen=True, slots=True)
class Served:
    """A worker's answer to one query, with its timings (profile seconds, but ``router_s``:
    the wall time this process and the worker link added)."""

    instance: int
    instance_type: str
    code: int
    error: str
    queue_s: float
    service_s: float
    latency_s: float
    router_s: float
    outputs: bytes | memoryview

    @classmethod
    def answer(
        cls,
        j: int,
        itype: str,
        pending: Pending,
        header: dict[str, Any],
        outputs: Any,
        *,
        now_t: float,
        scale: float,
    ) -> Served:
        """The answer ``header`` gave for ``pending`` at wall time ``now_t``; ``scale`` is the
        router's time scale."""
        service_s = float(header.get("service_ms", 0.0)) / 1000.0
        queue_s = pending.dispatch_t - pending.arrival_t  # admitted -> sent to a worker
        return cls(
            instance=j,
            instance_type=itype,
            code=int(header.get("code", 500)),
            error=str(header.get("error", "worker error")),
            queue_s=queue_s / scale,
            service_s=service_s / scale,
            # Latency counts from the request's first parsed byte, as the policy's deadline.
            latency_s=(now_t - pending.received_t) / scale,
            router_s=max(0.0, now_t - pending.received_t - queue_s - service_s),
            outputs=outputs,
        )


class AnswerSink(Protocol):
    def served(self, pending: Pending, served: Served) -> None: ...

    def failed(self, pending: Pending, status: int, message: str) -> None: ...


class Dispatcher:
    """Every part it works with is built before it and given here: the driver, the pool, the
    answer sink, the metrics, the router's clock and the traffic window it notes arrivals in.
    """

    def __init__(
        self,
        driver: Driver,
        pool: WorkerPool,
        sink: AnswerSink,
        metrics: RouterMetrics,
        settings: DispatchSettings,
        make_spec: Callable[[str, int], WorkerSpec],
        *,
        clock: RouterClock,
        traffic: TrafficWindow,
        log: Callable[[str], None] = print,
    ) -> None:
        self.driver = driver
        self.pool = pool
        self.sink = sink
        self.metrics = metrics
        self.settings = settings
        self.make_spec = make_spec
        self.clock = clock.wall
        self.log = log
        self.pending: dict[int, Pending] = {}
        self._scale = clock.scale
        self._t0 = clock.t0
        self._qids = itertools.count()
        self._last_arrival_s = 0.0
        self.overheads = OverheadWindow(driver, settings, clock.scale)
        self._timeout_s = HangTimeouts(driver, settings)
        self._resize_lock = asyncio.Lock()
        self.traffic = traffic
        self.pipeline = Pipeline(
            driver,
            self.pending,
            self.now_s,
            self._carry_out,
            lambda j: asyncio.ensure_future(pool.remove([j])),
        )

    # --- clock --------------------------------------------------------------------------------

    def now_s(self) -> float:
        """The policy's clock: wall seconds since start, divided by the time scale."""
        return (self.clock() - self._t0) / self._scale

    # --- events -------------------------------------------------------------------------------

    def admit(
        self,
        body: bytes,
        batch: int,
        request_id: str | None,
        reply: Any,
        received_t: float | None = None,
        json_length: int | None = None,
    ) -> Pending:
        """Queue a validated query. ``received_t`` (clock) is when its request reached the
        front end: the policy's deadline counts from there, so the time spent reading and
        validating the body is not slack the policy believes it still has. Arrival times stay
        non-decreasing, so the queue remains in arrival order."""
        now_t = self.clock()
        now_s = (now_t - self._t0) / self._scale
        arrival_s = now_s
        received = now_t if received_t is None else min(received_t, now_t)
        if received_t is not None:
            arrival_s = max((received - self._t0) / self._scale, self._last_arrival_s)
        self._last_arrival_s = arrival_s
        query = Query(next(self._qids), arrival_s, batch)
        pending = Pending(query, body, request_id, reply, now_t, received, json_length)
        self.pending[query.qid] = pending
        self.traffic.note(arrival_s, batch)
        self._carry_out(self.driver.arrive(query, now_s))
        return pending

    def instance_up(self, j: int) -> None:
        self._carry_out(self.driver.up(j, self.now_s()))

    def instance_down(self, j: int, reason: str, blame: bool) -> None:
        self.metrics.worker_failures.inc()
        now_s = self.now_s()
        # Each query the worker held is judged before the driver decides again, so a query
        # failed here is never started elsewhere. One released early (pipeline) goes back
        # first: it arrived before the one sent behind it.
        out = self.pipeline.lost(j)
        if out is not None and self._retry(out.query, blame):
            self.driver.requeue(out.query, now_s)
        running = self.driver.state.running[j]
        keep = running is None or self._retry(running, blame)
        _, starts = self.driver.down(j, now_s, keep=keep)
        if j in self.driver.retired:
            asyncio.ensure_future(self.pool.remove([j]))
        self._carry_out(starts)

    # --- dispatch and answers -----------------------------------------------------------------

    def _carry_out(self, starts: Any) -> None:
        for qid, j in starts:
            pending = self.pending[qid]
            pending.dispatch_t = self.clock()
            pending.attempts += 1
            self._dispatch(j, pending)

    def _dispatch(self, j: int, pending: Pending) -> None:
        q = pending.query
        timeout_s = self._timeout_s(j, q.batch_size)
        ahead = self.pipeline.out.get(j)
        pending.behind = ahead is not None
        if ahead is not None:  # it waits at the worker for the one ahead of it, at most
            timeout_s += self._timeout_s(j, ahead.query.batch_size)
            self.metrics.sent_behind.inc()
        # A replay worker never reads the tensors: sending them would only cost copies.
        header: dict[str, int] = {"qid": q.qid, "batch": q.batch_size}
        body = b"" if self.pool.replay(j) else pending.body
        if body and pending.json_length is not None:
            header["json_length"] = pending.json_length
        self.pool.dispatch(
            j, frame(header, body), timeout_s, lambda reply: self._replied(j, pending, reply)
        )
        if self.settings.pipeline and self.pool.pipelines(j):
            self.pipeline.arm(j, pending, self._scale)

    def _replied(self, j: int, pending: Pending, reply: bytes) -> None:
        try:
            # A view: the outputs go into the HTTP body as they are, with no copy of their own.
            header, outputs = split_frame(reply)
        except ValueError as exc:
            self.pool.fail(j, f"query {pending.query.qid} bad reply ({exc!r:.200})", False)
            return
        now_t = self.clock()
        if self.pipeline.answered(j, pending):  # its instance was released already
            self._respond(j, pending, header, outputs, now_t)
            self.pipeline.after_answer(j)
            return
        self.pipeline.disarm(j)
        _, starts = self.driver.complete(
            j,
            (now_t - self._t0) / self._scale,
            # Answer first: the client is not kept waiting behind the next decision (a
            # matching can take a few hundred us); the next query starts a write later.
            lambda _query: self._respond(j, pending, header, outputs, now_t),
        )
        self._carry_out(starts)
        if j in self.driver.retired:
            asyncio.ensure_future(self.pool.remove([j]))

    def _respond(
        self,
        j: int,
        pending: Pending,
        header: dict[str, Any],
        outputs: bytes | memoryview,
        now_t: float,
    ) -> None:
        if self.pending.pop(pending.query.qid, None) is None:
            return  # answered already (the router gave up on it while it ran)
        itype = self.driver.state.instance_type[j]
        served = Served.answer(j, itype, pending, header, outputs, now_t=now_t, scale=self._scale)
        if served.code == 200 and not pending.behind:
            # The worker link's round trip beyond the service, which the policy is told about
            # (not for a query that waited at the worker behind another: that wait is queueing).
            service_s = float(header.get("service_ms", 0.0)) / 1000.0  # wall, as sent
            self.overheads.note(max(0.0, now_t - pending.dispatch_t - service_s))
        self.sink.served(pending, served)

    def _retry(self, query: Query, blame: bool) -> bool:
        """Count a worker failure against ``query``, which that worker held: True when it
        goes back to the queue, False when it was failed with 502 instead (or was answered
        already) and must not run again."""
        pending = self.pending.get(query.qid)
        if pending is None:  # answered meanwhile (cannot happen while it ran; be safe)
            return False
        self.metrics.redispatched.inc()
        pending.blamed += blame
        if pending.blamed < self.settings.max_attempts:
            return True
        self.pending.pop(query.qid, None)
        self.sink.failed(
            pending,
            502,
            (
                f"query failed on {pending.blamed} workers in a row (each died or hung while "
                "serving it, alone or with one more waiting behind it); it was not retried again."
            ),
        )
        return False

    def in_flight(self) -> int:
        """Queries sent to workers and not answered (a released instance's included)."""
        return sum(q is not None for q in self.driver.state.running) + len(self.pipeline.out)

    # --- resizing and shutdown ----------------------------------------------------------------

    async def resize(self, target: Pool) -> dict[str, list[int]]:
        """Make the active instances match ``target``: start the missing ones, drain and stop
        the extra ones (a removed instance finishes the query it serves). Returns the ids
        added and removed."""
        if target.size < 1:
            raise ConfigError(f"pool {target} is empty.", "keep at least one instance.")
        async with self._resize_lock:
            added_types, removing = resize_plan(self.driver.state, self.driver.active, target)
            now_s = self.now_s()
            new_ids = self.driver.add_instances(added_types, now_s)
            # An instance released early still has a query out: it stops after that answer.
            free = [j for j in self.driver.retire(removing, now_s) if j not in self.pipeline.out]
            if free:
                await self.pool.remove(free)
            specs = [self.make_spec(t, j) for t, j in zip(added_types, new_ids, strict=True)]
            ids = await self.pool.add(specs) if specs else []
            if ids != new_ids:
                raise RuntimeError(f"pool ids {ids} differ from driver ids {new_ids}")
            self._carry_out(self.driver.tick(self.now_s()))
            self.log(f"resized to {target}: +{len(new_ids)} instances, -{len(removing)}")
            return {"added": new_ids, "removed": removing}

    def active_pool(self) -> Pool:
        return active_pool(self.driver)

    # --- what the front end reads -------------------------------------------------------------

    def queued(self) -> int:
        """Queries waiting in the central queue."""
        return len(self.driver.state.queue)

    def retired(self) -> frozenset[int]:
        """Instances being drained for a resize (or drained and stopped)."""
        return frozenset(self.driver.retired)

    def queue_wait_s(self, batch: int, n_up: int) -> float:
        """A rough wall-clock wait for the queue ahead (a 503's Retry-After): the queries
        queued, each the mean estimated service time of ``batch`` over the types, spread over
        ``n_up`` instances."""
        mean_s = float(np.mean(self.driver.ctx.est_ms(batch))) / 1000.0
        return len(self.driver.state.queue) * mean_s * self.settings.time_scale / n_up

    async def drain(self) -> None:
        """Wait for accepted queries (``drain_timeout_s`` at most); answer leftovers with 503."""
        deadline = self.clock() + self.settings.drain_timeout_s
        while self.pending and self.clock() < deadline:
            await asyncio.sleep(0.01)
        self.pipeline.close()
        for pending in list(self.pending.values()):
            self.driver.withdraw(pending.query.qid, self.now_s())
            self.pending.pop(pending.query.qid, None)
            self.sink.failed(pending, 503, "the router stopped before this query was served.")
