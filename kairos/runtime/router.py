"""The router: one asyncio process that owns the central queue and applies a policy to it.

It is the simulator's driver loop run on the wall clock. The queue and instance status are a
``ClusterState``; the policy is made by ``make_policy`` exactly as the simulator makes it.
After every arrival (an HTTP request passed validation) and every completion (a worker
replied) the router sets ``state.now_s``, calls ``on_arrival``/``on_finish``, then
``decide(state)``, and applies each decision with ``state.start``, sending the query to that
instance's worker over its persistent connection. A worker that errors, disconnects or exceeds
the per-query timeout is marked down (``state.mark_down`` puts its query back in the queue in
arrival order), the policy is asked again, and a recovery task restarts (``--workers local``)
or reconnects to it and marks it up. See docs/runtime.md.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import math
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from kairos.catalog import Pool
from kairos.distributor import ClusterState, PolicyContext, make_policy
from kairos.errors import ConfigError, RuntimeServiceError
from kairos.runtime.aio import pin_to_cpus, run_event_loop, settle_heap
from kairos.runtime.http import JSON, Deferred, HttpRequest, HttpResponse, HttpServer
from kairos.runtime.metrics import CONTENT_TYPE, RouterMetrics
from kairos.runtime.openapi import openapi_response
from kairos.runtime.supervisor import HOSTINGS, LocalSupervisor, WorkerSpec
from kairos.runtime.transport import TRANSPORTS, Link, TcpLink, WorkerLost, make_link
from kairos.runtime.wire import (
    BINARY_HEADER,
    BadRequest,
    TensorSpec,
    frame,
    parse_json_length,
    parse_specs,
    specs_as_dicts,
    unframe,
    validate_request,
)
from kairos.scenario import Scenario
from kairos.sim.capacity import rough_capacity_qps
from kairos.workload import Query

LISTEN_LINE = "kairos router listening on"
__all__ = ["Router", "RouterConfig", "run_event_loop", "run_router"]


OVERHEAD_WINDOW = 512  # recent queries whose round-trip overhead the router remembers
OVERHEAD_REFRESH = 64  # recompute the policy's overhead estimate every this many answers


@dataclass(frozen=True)
class RouterConfig:
    """Settings of one router. ``workers=None`` starts the pool's workers locally."""

    model: str
    pool: Pool
    policy: str = "fcfs"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: tuple[str, ...] | None = None
    worker_mode: str = "replay"
    worker_hosting: str = "type"  # local replay workers: a process per instance type or instance
    router_cpus: tuple[int, ...] = ()  # pin the router to these cores (() = no pinning)
    worker_cpus: tuple[int, ...] = ()  # pin local workers to these cores
    transport: str = "tcp"
    handler: str | None = None
    time_scale: float = 1.0
    max_queue: int = 1000
    api_token: str | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    timeout_floor_s: float = 2.0
    timeout_p99_multiple: float = 5.0
    max_attempts: int = 3
    drain_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    seed: int = 0
    profiles_path: str | None = None
    policy_options: tuple[tuple[str, Any], ...] = ()
    # Tell the policy the measured transport delay: state.overhead_s = factor x this quantile
    # of the recent worker round-trip overhead (factor 2: the client's HTTP legs, which the
    # router cannot time, behave like the worker legs it can). 0 turns it off.
    overhead_factor: float = 3.0
    overhead_quantile: float = 0.95

    def check(self) -> None:
        if self.max_queue < 1:
            raise ConfigError(
                f"--max-queue {self.max_queue} is below 1.", "allow at least one queued query."
            )
        if not math.isfinite(self.time_scale) or self.time_scale < 0:
            raise ConfigError(
                f"--time-scale {self.time_scale!r} is not a number >= 0.",
                "pass 1 for real time, 0.1 for 10x faster, 0 for zero-latency replay workers.",
            )
        if self.workers is not None and len(self.workers) != self.pool.size:
            raise ConfigError(
                f"{len(self.workers)} worker addresses for a pool of {self.pool.size} "
                f"instances ({self.pool}).",
                "give one HOST:PORT per instance, in pool order, or --workers local.",
            )
        if self.transport not in TRANSPORTS:
            raise ConfigError(
                f"transport {self.transport!r} is unknown.", f"use one of {TRANSPORTS}."
            )
        if self.worker_hosting not in HOSTINGS:
            raise ConfigError(
                f"worker hosting {self.worker_hosting!r} is unknown.", f"use one of {HOSTINGS}."
            )
        if not self.timeout_floor_s > 0:
            raise ConfigError(
                f"--timeout-floor-s {self.timeout_floor_s!r} is not positive.",
                "pass a hang timeout floor in seconds, for example 2.",
            )
        if not (math.isfinite(self.overhead_factor) and self.overhead_factor >= 0):
            raise ConfigError(
                f"--overhead-factor {self.overhead_factor!r} is not a number >= 0.",
                "pass 3 (the default), or 0 to keep the policy unaware of transport delay.",
            )
        if not 0.0 < self.overhead_quantile < 1.0:
            raise ConfigError(
                f"overhead quantile {self.overhead_quantile!r} is not in (0, 1).",
                "use e.g. 0.95.",
            )
        if self.api_token is not None and not self.api_token:
            raise ConfigError("--api-token is empty.", "pass a non-empty token or omit it.")


class WorkerLink:
    """Router-side record of one instance's worker and the carrier that reaches it."""

    def __init__(self, index: int, instance_type: str, transport: str) -> None:
        self.index = index
        self.instance_type = instance_type
        self.transport = transport
        self.address = ""
        self.epoch = 0  # bumped on every failure: replies from an older epoch are ignored
        self.healthy = False
        self.replay = False
        self.pid: int | None = None
        self._carrier: Link | None = None

    async def open(self, timeout_s: float) -> dict[str, Any]:
        carrier = make_link(self.transport, self.address)
        try:
            description = await carrier.open(timeout_s)
        except BaseException:
            await carrier.close()
            raise
        self._carrier = carrier
        return description

    async def call(self, message: bytes, timeout_s: float) -> bytes:
        carrier = self._carrier
        if carrier is None:
            raise WorkerLost("not connected")
        return await carrier.call(message, timeout_s)

    @property
    def direct(self) -> TcpLink | None:
        """The framed-TCP carrier, which supports callback dispatch (None for gRPC)."""
        carrier = self._carrier
        return carrier if isinstance(carrier, TcpLink) else None

    async def close(self) -> None:
        carrier, self._carrier = self._carrier, None
        if carrier is not None:
            await carrier.close()


class Pending:
    """A query the router accepted and has not answered yet."""

    __slots__ = ("query", "body", "request_id", "answer", "arrival_t", "dispatch_t", "attempts",
                 "json_length", "received_t")  # fmt: skip

    def __init__(self, query: Query, body: bytes, request_id: str | None, arrival_t: float,
                 json_length: int | None = None) -> None:  # fmt: skip
        self.query = query
        self.body = body
        self.json_length = json_length
        self.received_t = arrival_t  # when its request's first bytes were parsed (admit sets it)
        self.request_id = request_id
        self.answer = Deferred()
        self.arrival_t = arrival_t
        self.dispatch_t = arrival_t
        self.attempts = 0


class Router:
    def __init__(self, cfg: RouterConfig, scenario: Scenario) -> None:
        cfg.check()
        self.cfg = cfg
        self.scenario = scenario
        types = cfg.pool.instance_types()
        self.state = ClusterState(types)
        seed_seq = np.random.SeedSequence(cfg.seed)
        self.ctx = PolicyContext(
            scenario.model, scenario.qos_ms, scenario.profiles, types,
            np.random.default_rng(seed_seq.spawn(1)[0]),
        )  # fmt: skip
        self.policy = make_policy(cfg.policy, self.ctx, **dict(cfg.policy_options))
        self._scale = cfg.time_scale if cfg.time_scale > 0 else 1.0
        self._overheads = np.zeros(OVERHEAD_WINDOW)
        self._n_overheads = 0
        self._t0 = time.perf_counter()
        self._qos_s = scenario.qos_ms / 1000.0
        self._qids = itertools.count()
        self._last_arrival_s = 0.0
        self.pending: dict[int, Pending] = {}
        self.links = [WorkerLink(j, t, cfg.transport) for j, t in enumerate(types)]
        self.signature: tuple[TensorSpec, ...] | None = None
        self.out_signature: tuple[TensorSpec, ...] | None = None
        self.described = False
        self.draining = False
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timeouts: dict[tuple[int, int], float] = {}
        self._max_batch = scenario.profiles.max_batch
        self.supervisor: LocalSupervisor | None = None
        self.metrics = RouterMetrics(
            self.state.type_names,
            cfg.pool.cost_per_hr(scenario.prices),
            queue_length=lambda: len(self.state.queue),
            in_flight=lambda: sum(q is not None for q in self.state.running),
            workers_up=lambda: sum(link.healthy for link in self.links),
        )
        self._model_bytes = orjson.dumps(scenario.model)
        self._expected_auth = f"Bearer {cfg.api_token}".encode()
        self._routes = self._make_routes()
        for j in range(self.state.n_instances):  # nothing runs until its worker is connected
            self.state.mark_down(j)

    # --- clock and bookkeeping ------------------------------------------------------------

    def _now_s(self) -> float:
        """The policy's clock: wall seconds since start, divided by the time scale."""
        return (time.perf_counter() - self._t0) / self._scale

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _timeout_s(self, j: int, batch: int) -> float:
        """Hang detection: several times the profiled p99 service time, plus a floor."""
        key = (self.state.type_idx[j], batch)
        t = self._timeouts.get(key)
        if t is None:
            p99_ms = float(self.scenario.profiles.get(self.links[j].instance_type).quantile_ms(
                batch, 0.99))  # fmt: skip
            worker_scale = self.cfg.time_scale
            t = self.cfg.timeout_floor_s + self.cfg.timeout_p99_multiple * p99_ms / 1000.0 * (
                worker_scale
            )
            self._timeouts[key] = t
        return t

    def _log(self, message: str) -> None:
        print(f"kairos router: {message}", file=sys.stderr, flush=True)

    # --- the driver loop (arrival, decide, dispatch, finish, failure) ----------------------

    def admit(
        self,
        body: bytes,
        batch: int,
        request_id: str | None,
        received_t: float | None = None,
        json_length: int | None = None,
    ) -> Pending:
        """Queue a validated query. ``received_t`` (perf_counter) is when its request reached
        the handler: the policy's deadline counts from there, so the time spent reading and
        validating the body is not slack the policy believes it still has. Arrival times
        stay non-decreasing, so the queue remains in arrival order."""
        now_t = time.perf_counter()
        state = self.state
        state.now_s = (now_t - self._t0) / self._scale
        arrival_s = state.now_s
        if received_t is not None:
            arrival_s = min(arrival_s, max((received_t - self._t0) / self._scale,
                                           self._last_arrival_s))  # fmt: skip
        self._last_arrival_s = arrival_s
        query = Query(next(self._qids), arrival_s, batch)
        pending = Pending(query, body, request_id, now_t, json_length)
        if received_t is not None:
            pending.received_t = min(received_t, now_t)
        self.pending[query.qid] = pending
        state.enqueue(query)
        self.policy.on_arrival(query, state)
        self._schedule()
        return pending

    def _schedule(self) -> None:
        state = self.state
        if not state.queue or not state.idle:
            return
        state.now_s = self._now_s()
        est = self.ctx.est_ms
        type_idx = state.type_idx
        for qid, j in self.policy.decide(state):
            query = state.queue.get(qid)
            batch = query.batch_size if query is not None else 0
            state.start(qid, j, float(est(batch)[type_idx[j]]) / 1000.0)
            pending = self.pending[qid]
            pending.dispatch_t = time.perf_counter()
            pending.attempts += 1
            self._dispatch(j, pending)

    def _dispatch(self, j: int, pending: Pending) -> None:
        link = self.links[j]
        q = pending.query
        # A replay worker never reads the tensors: sending them would only cost copies.
        header: dict[str, int] = {"qid": q.qid, "batch": q.batch_size}
        body = b"" if link.replay else pending.body
        if body and pending.json_length is not None:
            header["json_length"] = pending.json_length
        message = frame(header, body)
        carrier = link.direct
        if carrier is None:
            self._spawn(self._serve(j, pending, message))
            return
        # Framed TCP: write now and take the reply in the protocol callback (see TcpLink).
        epoch = link.epoch
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self._timeout_s(j, q.batch_size), self._failed_soon, j,
                                epoch, f"query {q.qid} timed out")  # fmt: skip

        def on_reply(result: bytes | BaseException) -> None:
            timer.cancel()
            self._replied(j, epoch, pending, result)

        try:
            carrier.start_call(message, on_reply)
        except WorkerLost as exc:
            timer.cancel()
            # Not inline: the caller is iterating over the policy's decisions.
            loop.call_soon(self._failed_soon, j, epoch, f"query {q.qid} failed ({exc!r:.200})")

    def _failed_soon(self, j: int, epoch: int, reason: str) -> None:
        if not self._closing:
            self._worker_failed(j, epoch, reason)

    def _replied(self, j: int, epoch: int, pending: Pending, result: bytes | BaseException
                 ) -> None:  # fmt: skip
        if isinstance(result, BaseException):
            self._failed_soon(j, epoch, f"query {pending.query.qid} failed ({result!r:.200})")
            return
        try:
            header, outputs = unframe(result)
        except ValueError as exc:
            self._failed_soon(j, epoch, f"query {pending.query.qid} bad reply ({exc!r:.200})")
            return
        if self.links[j].epoch == epoch:
            self._finished(j, pending, header, outputs)

    async def _serve(self, j: int, pending: Pending, message: bytes) -> None:
        """gRPC carrier: a task per query awaits the reply."""
        link = self.links[j]
        epoch = link.epoch
        q = pending.query
        try:
            reply = await link.call(message, self._timeout_s(j, q.batch_size))
            header, outputs = unframe(reply)
        except (Exception, asyncio.CancelledError) as exc:
            if self._closing:
                return
            reason = "timed out" if isinstance(exc, TimeoutError) else f"failed ({exc!r:.200})"
            self._worker_failed(j, epoch, f"query {q.qid} {reason}")
            return
        if link.epoch == epoch:
            self._finished(j, pending, header, outputs)

    def _finished(self, j: int, pending: Pending, header: dict[str, Any], outputs: bytes) -> None:
        now_t = time.perf_counter()
        state = self.state
        state.now_s = (now_t - self._t0) / self._scale
        query = state.finish(j)
        self.policy.on_finish(query, j, state)
        # Answer first: the client is not kept waiting behind the next decision (a matching
        # can take a few hundred us); the next query starts a write later (tens of us).
        self._respond(j, pending, header, outputs, now_t)
        self._schedule()

    def _respond(self, j: int, pending: Pending, header: dict[str, Any], outputs: bytes,
                 now_t: float) -> None:  # fmt: skip
        code = int(header.get("code", 500))
        itype = self.links[j].instance_type
        service_s = float(header.get("service_ms", 0.0)) / 1000.0
        queue_s = pending.dispatch_t - pending.arrival_t  # admitted -> sent to a worker
        scale = self._scale
        # Latency counts from the request's first parsed byte, as the policy's deadline does.
        latency_s = (now_t - pending.received_t) / scale
        if code != 200:
            self.metrics.errors.labels(str(code)).inc()
            self._answer(pending, code, _error_body(str(header.get("error", "worker error"))))
            return
        # The worker link's round trip beyond the service, which the policy is told about.
        self._note_overhead(max(0.0, now_t - pending.dispatch_t - service_s))
        # All this process and its worker link added (wall seconds): parse, validation, links.
        router_s = max(0.0, now_t - pending.received_t - queue_s - service_s)
        self.metrics.observe(itype, latency_s, queue_s / scale, router_s, self._qos_s)
        params = {
            "instance": j,
            "instance_type": itype,
            "queue_ms": queue_s / scale * 1000.0,
            "service_ms": service_s / scale * 1000.0,
            "latency_ms": latency_s * 1000.0,
            "qos_met": latency_s <= self._qos_s,
            "attempts": pending.attempts,
            "overhead_ms": router_s * 1000.0,  # wall ms, see docs/runtime.md
        }
        body = b"".join((
            b'{"model_name":', self._model_bytes, b',"model_version":"1","id":',
            orjson.dumps(pending.request_id), b',"parameters":', orjson.dumps(params),
            b',"outputs":', outputs, b"}",
        ))  # fmt: skip
        self._answer(pending, 200, body)

    def _note_overhead(self, overhead_s: float) -> None:
        """Keep a window of round-trip overheads; refresh ``state.overhead_s`` periodically."""
        if self.cfg.overhead_factor <= 0:
            return
        self._overheads[self._n_overheads % OVERHEAD_WINDOW] = overhead_s
        self._n_overheads += 1
        if self._n_overheads % OVERHEAD_REFRESH == 0:
            window = self._overheads[: min(self._n_overheads, OVERHEAD_WINDOW)]
            wall_s = self.cfg.overhead_factor * float(
                np.quantile(window, self.cfg.overhead_quantile)
            )
            self.state.overhead_s = wall_s / self._scale

    def _answer(self, pending: Pending, status: int, body: bytes) -> None:
        self.pending.pop(pending.query.qid, None)
        pending.answer.resolve(HttpResponse(status, body))

    def _worker_failed(self, j: int, epoch: int, reason: str) -> None:
        link = self.links[j]
        if link.epoch != epoch or not link.healthy:
            return
        link.healthy = False
        link.epoch += 1
        self.metrics.worker_failures.inc()
        self._log(f"worker {j} ({link.instance_type} at {link.address}) marked down: {reason}")
        self.state.now_s = self._now_s()
        query = self.state.mark_down(j)
        if query is not None:
            self._requeued(query)
        self._spawn(self._recover(j))
        self._schedule()

    def _requeued(self, query: Query) -> None:
        pending = self.pending.get(query.qid)
        if pending is None:
            self.state.queue.pop(query.qid, None)
            return
        self.metrics.redispatched.inc()
        if pending.attempts >= self.cfg.max_attempts:
            self.state.queue.pop(query.qid, None)
            self.metrics.errors.labels("502").inc()
            self._answer(pending, 502, _error_body(
                f"query failed on {pending.attempts} workers in a row (each died or hung "
                "while serving it); it was not retried again."))  # fmt: skip

    def on_worker_exit(self, j: int) -> None:
        """The supervisor saw worker ``j``'s process exit."""
        self._worker_failed(j, self.links[j].epoch, "its process exited")

    async def _recover(self, j: int) -> None:
        link = self.links[j]
        await link.close()
        backoff_s = 0.1
        stale_pid = link.pid  # the process that failed (a co-hosting sibling may restart it)
        while not self._closing:
            try:
                if self.supervisor is not None:
                    link.address = await self.supervisor.restart(j, stale_pid)
                description = await link.open(self.cfg.connect_timeout_s)
                self._check_worker(j, description)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.supervisor is not None:
                    stale_pid = self.supervisor.pid(j)
                await link.close()
                self._log(f"worker {j} at {link.address} not back yet ({exc!r:.200})")
                await asyncio.sleep(backoff_s)
                backoff_s = min(2 * backoff_s, 5.0)
        else:
            return
        self._bring_up(j)
        self._log(f"worker {j} ({link.instance_type} at {link.address}) is back up")

    def _bring_up(self, j: int) -> None:
        self.links[j].healthy = True
        self.state.now_s = self._now_s()
        self.state.mark_up(j)
        self._schedule()

    def _check_worker(self, j: int, description: dict[str, Any]) -> None:
        link = self.links[j]
        link.replay = description.get("mode") == "replay"
        link.pid = description.get("pid")
        got = (description.get("model"), description.get("instance_type"))
        if got != (self.scenario.model, link.instance_type):
            raise RuntimeServiceError(
                f"worker at {link.address} serves model {got[0]!r} on {got[1]!r}, but pool "
                f"slot {j} expects {self.scenario.model!r} on {link.instance_type!r}.",
                "list --workers in pool order (types grouped as in --pool), one per instance.",
            )
        if not self.described:
            self.signature = parse_specs(description.get("inputs"))
            self.out_signature = parse_specs(description.get("outputs"))
            self.described = True

    # --- lifecycle ------------------------------------------------------------------------

    async def start_workers(self) -> None:
        """Start (or connect to) every worker; unreachable remote ones keep being retried."""
        if self.cfg.workers is None:
            specs = [
                WorkerSpec(t, self.scenario.model, self.cfg.worker_mode, self.cfg.handler,
                           self.cfg.time_scale, self.cfg.seed * 1000 + j, self.cfg.profiles_path,
                           self.cfg.transport, self.cfg.worker_cpus)
                for j, t in enumerate(self.state.instance_type)
            ]  # fmt: skip
            self.supervisor = LocalSupervisor(specs, self.on_worker_exit, self.cfg.worker_hosting)
            addresses = await self.supervisor.start_all()
        else:
            addresses = list(self.cfg.workers)
        for link, address in zip(self.links, addresses, strict=True):
            link.address = address
        results = await asyncio.gather(
            *(link.open(self.cfg.connect_timeout_s) for link in self.links), return_exceptions=True
        )
        for j, res in enumerate(results):
            if isinstance(res, BaseException):
                self._log(f"worker {j} at {self.links[j].address} unreachable ({res!r:.200})")
                self._spawn(self._recover(j))
            else:
                self._check_worker(j, res)
                self._bring_up(j)

    @property
    def ready(self) -> bool:
        return self.described and not self.draining and any(k.healthy for k in self.links)

    async def drain(self) -> None:
        """Refuse new queries and wait for accepted ones; answer leftovers with 503."""
        self.draining = True
        deadline = time.perf_counter() + self.cfg.drain_timeout_s
        while self.pending and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        for pending in list(self.pending.values()):
            self.state.queue.pop(pending.query.qid, None)
            self.metrics.errors.labels("503").inc()
            self._answer(pending, 503, _error_body(
                "the router stopped before this query could be served."))  # fmt: skip

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(link.close() for link in self.links), return_exceptions=True)
        if self.supervisor is not None:
            await self.supervisor.stop_all()

    # --- HTTP (KServe v2 / Open Inference Protocol) -----------------------------------------

    def handle(self, request: HttpRequest) -> HttpResponse | Deferred:
        """Route one request (see ``kairos.runtime.http``); inference answers later."""
        path = request.path
        if self.cfg.api_token and not path.startswith("/v2/health/"):
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, self._expected_auth):
                return _error(401, "missing or wrong bearer token.",
                              (("WWW-Authenticate", 'Bearer realm="kairos"'),))  # fmt: skip
        fixed = self._routes.get(path)
        if fixed is not None:
            return fixed() if request.method in ("GET", "HEAD") else _not_allowed("GET")
        if not path.startswith("/v2/models/"):
            return _no_endpoint(path)
        model, _, rest = path[len("/v2/models/"):].partition("/")  # fmt: skip
        if rest.startswith("versions/"):
            version, _, rest = rest[len("versions/") :].partition("/")
            if version != "1":
                return _error(404, f"model version {version!r} does not exist (only '1').")
        if model != self.scenario.model:
            return _error(404, f"model {model!r} is not served here (this router serves "
                               f"{self.scenario.model!r}).")  # fmt: skip
        if rest == "infer":
            return self._infer(request) if request.method == "POST" else _not_allowed("POST")
        if rest not in ("", "ready"):
            return _no_endpoint(path)
        if request.method not in ("GET", "HEAD"):
            return _not_allowed("GET")
        return self._model_ready() if rest else self._model_metadata()

    def _make_routes(self) -> dict[str, Callable[[], HttpResponse]]:
        return {
            "/v2": lambda: _json(
                200, {"name": "kairos", "version": "0.1.0", "extensions": ["binary_tensor_data"]}
            ),  # fmt: skip
            "/v2/health/live": lambda: _json(200, {"live": True}),
            "/v2/health/ready": lambda: _json(200 if self.ready else 503, {"ready": self.ready}),
            "/metrics": lambda: HttpResponse(200, self.metrics.render(), CONTENT_TYPE.encode()),
            "/v2/openapi.json": lambda: openapi_response(self.cfg.model, self.signature),
        }

    def _model_ready(self) -> HttpResponse:
        return _json(200 if self.ready else 503, {"name": self.scenario.model,
                                                  "ready": self.ready})  # fmt: skip

    def _model_metadata(self) -> HttpResponse:
        params = {
            "pool": str(self.cfg.pool),
            "policy": self.cfg.policy,
            "qos_ms": self.scenario.qos_ms,
            "time_scale": self.cfg.time_scale,
            "max_batch": self._max_batch,
            "capacity_hint_qps": rough_capacity_qps(self.scenario, self.cfg.pool),
            "cost_per_hr": self.cfg.pool.cost_per_hr(self.scenario.prices),
            "workers": [
                {"instance": k.index, "instance_type": k.instance_type, "address": k.address,
                 "up": k.healthy, "pid": k.pid}
                for k in self.links
            ],
        }  # fmt: skip
        return _json(200, {
            "name": self.scenario.model, "versions": ["1"], "platform": "kairos",
            "inputs": specs_as_dicts(self.signature) or [],
            "outputs": specs_as_dicts(self.out_signature) or [],
            "parameters": params,
        })  # fmt: skip

    def _reject(self, reason: str, message: str) -> HttpResponse:
        self.metrics.rejected.labels(reason).inc()
        n_up = max(1, sum(link.healthy for link in self.links))
        mean_s = float(np.mean(self.ctx.est_ms(int(self.scenario.mix.mean)))) / 1000.0
        wait_s = len(self.state.queue) * mean_s * self.cfg.time_scale / n_up
        return _error(503, message, (("Retry-After", str(max(1, math.ceil(wait_s)))),))

    def _infer(self, request: HttpRequest) -> HttpResponse | Deferred:
        if self.draining:
            return self._reject("draining", "the router is shutting down.")
        if not self.described:
            return self._reject("not_ready", "no worker has come up yet.")
        if len(self.state.queue) >= self.cfg.max_queue:
            return self._reject(
                "queue_full", f"the queue is full ({self.cfg.max_queue} queries); retry later."
            )
        if request.too_large:
            return self._bad_request(
                f"request body of {request.body_size} bytes exceeds the "
                f"{self.cfg.max_body_bytes}-byte limit; split the query or raise "
                "--max-body-bytes."
            )
        body = request.body
        try:
            json_length = parse_json_length(request.headers.get(BINARY_HEADER), len(body))
            parsed = validate_request(body, self.signature, self._max_batch, json_length)
        except BadRequest as exc:
            return self._bad_request(str(exc))
        pending = self.admit(body, parsed.batch_size, parsed.request_id, request.received_t,
                             json_length)  # fmt: skip
        return pending.answer

    def _bad_request(self, message: str) -> HttpResponse:
        self.metrics.errors.labels("400").inc()
        return _error(400, message)


def _json(status: int, doc: Any, headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    return HttpResponse(status, orjson.dumps(doc), JSON, headers)


def _error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def _error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    return HttpResponse(status, _error_body(message), JSON, headers)


def _no_endpoint(path: str) -> HttpResponse:
    return _error(404, f"no endpoint {path!r}; see GET /v2 and the KServe v2 paths.")


def _not_allowed(allow: str) -> HttpResponse:
    return _error(405, f"method not allowed here; use {allow}.", (("Allow", allow),))


async def run_router(
    cfg: RouterConfig, scenario: Scenario, on_listening: Callable[[str], None] | None = None
) -> None:
    """Serve until SIGINT/SIGTERM, then drain accepted queries and stop the workers."""
    router = Router(cfg, scenario)
    pin_to_cpus(cfg.router_cpus)
    server = HttpServer(router.handle, cfg.max_body_bytes)
    try:
        try:
            host, port = await server.start(cfg.host, cfg.port)
        except OSError as exc:
            raise ConfigError(
                f"the router cannot listen on {cfg.host}:{cfg.port} ({exc.strerror or exc}).",
                "pick a free --port (0 = any free port) or stop what is using it.",
            ) from None
        url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        print(f"{LISTEN_LINE} {url} (model {scenario.model}, pool {cfg.pool}, policy "
              f"{cfg.policy}, QoS {scenario.qos_ms:g} ms)", flush=True)  # fmt: skip
        if on_listening is not None:
            on_listening(url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await router.start_workers()
        settle_heap()
        print(f"kairos router ready: {sum(k.healthy for k in router.links)} of "
              f"{len(router.links)} workers up", flush=True)  # fmt: skip
        await stop.wait()
        print("kairos router: draining", flush=True)
        await router.drain()
    finally:
        await server.stop()
        await router.close()
