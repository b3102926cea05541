"""A worker: one instance of the pool, serving one query at a time to the router.

Modes:
  replay  emulate an instance type: sleep for a service time sampled from the type's profile
          at the query's batch size (seeded RNG), times ``time_scale`` (0 = answer at once);
  model   run a real model on the query's inputs: the built-in PyTorch model named by
          ``--model`` (``kairos.models``), or the user's ``module:callable`` taking
          ``{name: ndarray}`` and returning ``{name: ndarray}`` (``kairos.serving.worker.handlers``
          checks each request against the model's declared inputs first). ``--local-type``
          runs the process as a smaller local instance type (``kairos.serving.worker.cpushare``).

The router reaches it over a persistent connection, framed TCP or gRPC (``transport``): a
request frame in, a reply frame out, plus ``describe`` (what the worker serves). One query is
in service at a time even if several routers connect: a replay worker holds an
``asyncio.Lock``; a model worker runs its queries on one compute thread
(``kairos.serving.worker.lane``), and over framed TCP it receives and decodes the next query
into a reused buffer while the current one runs. A reply's ``service_ms`` is the measured
wall time of the query's own work (decoding, the model, encoding), not its wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

import numpy as np
import orjson

from kairos.aio import check_bind_host, pin_to_cpus, run_event_loop, settle_heap
from kairos.errors import ConfigError
from kairos.limits import INSTANCES, PORT, TIME_SCALE
from kairos.profiles import LatencyProfile, default_profiles, load_profiles
from kairos.protocol.frames import frame, split_frame
from kairos.protocol.tensors import BadRequest, TensorSpec, encode_outputs, specs_as_dicts
from kairos.registry import Registry
from kairos.serving.pool.transport import TRANSPORTS, Server
from kairos.serving.worker import cpushare
from kairos.serving.worker.handlers import ModelHandler
from kairos.serving.worker.lane import (
    ComputeLane,
    Connection,
    Query,
    ReceiveBuffers,
    decode_into,
    payload_view,
    start_lane_server,
)
from kairos.serving.worker.launch import WorkerSpec
from kairos.serving.worker.stand_in import stand_in_signature

READY_LINE = "KAIROS_WORKER_READY"
HEADER_LENGTH = struct.Struct("!I")  # a frame's header length, as the wire's length prefix
# asyncio timers have millisecond granularity; the last stretch of a sleep is spent in
# time.sleep so replayed service times are accurate to tens of microseconds.
_FINE_SLEEP_S = 0.002


class Handler(Protocol):
    inputs: tuple[TensorSpec, ...] | None
    outputs: tuple[TensorSpec, ...] | None

    async def run(
        self, batch_size: int, payload: bytes | memoryview, json_length: int | None = None
    ) -> bytes: ...


class ReplayHandler:
    """Sleeps the sampled service time; answers the stand-in model's output shape."""

    def __init__(self, profile: LatencyProfile, time_scale: float, seed: int) -> None:
        self._profile = profile
        self._scale = time_scale
        self._rng = np.random.default_rng(seed)
        self._k = profile.quantiles_ms.shape[1] - 1
        # The emulated instance declares the torch-free stand-in's tensors (stand_in.py says
        # why not the real model's), so clients send a recommendation query.
        inputs, outputs = stand_in_signature()
        self.inputs: tuple[TensorSpec, ...] | None = inputs
        self.outputs: tuple[TensorSpec, ...] | None = outputs
        self._out_cache: dict[int, bytes] = {}
        self._rows: dict[int, list[float]] = {}

    def sample_ms(self, batch_size: int) -> float:
        """``profile.sample_ms`` with the batch's inverse-CDF row cached (hot path)."""
        row = self._rows.get(batch_size)
        if row is None:
            row = self._profile.service_ms(
                np.full(self._k + 1, float(batch_size)), np.linspace(0.0, 1.0, self._k + 1)
            ).tolist()
            self._rows[batch_size] = row
        pos = float(self._rng.random()) * self._k
        i = min(int(pos), self._k - 1)
        return row[i] + (pos - i) * (row[i + 1] - row[i])

    async def run(
        self, batch_size: int, payload: bytes | memoryview, json_length: int | None = None
    ) -> bytes:
        delay_s = self.sample_ms(batch_size) * self._scale / 1000.0
        if delay_s > 0:
            await precise_sleep(delay_s)
        out = self._out_cache.get(batch_size)
        if out is None:
            out = encode_outputs({"score": np.full((batch_size, 1), 0.5, dtype=np.float32)})
            self._out_cache[batch_size] = out
        return out


def tighten_timer_slack() -> None:
    """Ask Linux to fire this process's timers on time (its default slack is 50 us).

    A replayed service time is a sleep; the slack is added to every wake-up, and on a
    shared machine every microsecond of it is a microsecond the simulator does not have.
    No-op where prctl is unavailable.
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        pr_set_timerslack = 29
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_timerslack, 1, 0, 0, 0)


async def precise_sleep(delay_s: float) -> None:
    end = time.perf_counter() + delay_s
    if delay_s > _FINE_SLEEP_S:
        await asyncio.sleep(delay_s - _FINE_SLEEP_S)
    rest = end - time.perf_counter()
    if rest > 0:
        time.sleep(rest)


def load_callable(spec: str) -> Callable[[dict[str, np.ndarray]], Any]:
    """``module:attr``; a class is instantiated without arguments."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(
            f"handler {spec!r} is not MODULE:CALLABLE.", "write e.g. mypkg.models:predict."
        )
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"handler {spec!r} cannot be loaded ({exc}).",
            "check the module is importable (on PYTHONPATH) and defines that name.",
        ) from None
    if isinstance(obj, type):
        obj = obj()
    if not callable(obj):
        raise ConfigError(f"handler {spec!r} is not callable.", "point at a function or class.")
    return obj


def _replay_handler(spec: WorkerSpec, profile: LatencyProfile | None) -> Handler:
    if profile is None:
        raise ConfigError(f"replay worker for {spec.model!r} got no profile.", "report a bug.")
    return ReplayHandler(profile, spec.time_scale, spec.seed)


def _model_handler(spec: WorkerSpec, profile: LatencyProfile | None) -> Handler:
    from kairos.models import load_model

    return ModelHandler(load_model(spec.model, threads=spec.threads or _usable_cores()))


WORKER_MODES: Registry[Callable[[WorkerSpec, LatencyProfile | None], Handler]] = Registry(
    "worker mode", "pass --mode replay (emulate the type from its profile) or model."
)
WORKER_MODES.add("replay", _replay_handler)
WORKER_MODES.add("model", _model_handler)


def make_handler(spec: WorkerSpec, profile: LatencyProfile | None) -> Handler:
    """A user's ``--handler`` wins over the mode; otherwise the mode's handler."""
    make = WORKER_MODES.get(spec.mode)
    TIME_SCALE.check(spec.time_scale)
    if spec.handler is not None:
        return ModelHandler(load_callable(spec.handler))
    return make(spec, profile)


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


class WorkerService:
    """What the carriers call: ``description`` and ``handle``; all state lives here."""

    def __init__(self, spec: WorkerSpec, handler: Handler) -> None:
        self._spec = spec
        self._handler = handler
        self._lock = asyncio.Lock()
        self._served = 0
        self._lane: ComputeLane | None = None
        self.buffers = ReceiveBuffers()

    @property
    def served(self) -> int:
        return self._served + (self._lane.served if self._lane is not None else 0)

    @property
    def pipelined(self) -> bool:
        """Whether queries run on a compute lane (a model) rather than under the lock."""
        return isinstance(self._handler, ModelHandler)

    def lane(self) -> ComputeLane:
        if self._lane is None:
            assert isinstance(self._handler, ModelHandler)
            self._lane = ComputeLane(self._handler)
        return self._lane

    def stop(self) -> None:
        if self._lane is not None:
            self._lane.stop()

    def accept(self, conn: Connection, buf: bytearray, start: int, stop: int) -> None:
        """A frame received whole in ``buf[start:stop]`` (framed TCP, model workers): decoded
        here, on the event loop, while the lane may be running the previous query."""
        assert isinstance(self._handler, ModelHandler)
        bad: str | None = None
        try:
            (n,) = HEADER_LENGTH.unpack_from(buf, start)
            with memoryview(buf) as view:
                header = orjson.loads(view[start + HEADER_LENGTH.size : start + 4 + n])
            if not isinstance(header, dict):
                raise ValueError("the frame's header is not an object")
        except (ValueError, struct.error) as exc:
            header, bad = {}, f"bad frame ({exc})"
        if header.get("op") == "describe":
            conn.buffers.give_back(buf)
            described = frame(self.description())
            conn.write(HEADER_LENGTH.pack(len(described)) + described)
            return
        query = Query(header, conn.write)
        query.conn, query.buf = conn, buf
        if bad is not None:
            query.error = (400, bad)
        else:
            lo, json_length = start + HEADER_LENGTH.size + n, header.get("json_length")
            payload = (
                payload_view(conn, buf, lo, stop, json_length)
                if type(json_length) is int and 0 <= json_length <= stop - lo
                else memoryview(buf)[lo:stop]
            )
            decode_into(query, self._handler, payload)
            del payload
        self.lane().submit(query)

    def description(self) -> dict[str, Any]:
        return {
            "model": self._spec.model,
            "instance_type": self._spec.instance_type,
            "mode": "custom" if self._spec.handler else self._spec.mode,
            "inputs": specs_as_dicts(self._handler.inputs),
            "outputs": specs_as_dicts(self._handler.outputs),
            "pid": os.getpid(),
        }

    async def handle(self, request: bytes) -> bytes:
        header, payload = split_frame(request)
        if isinstance(self._handler, ModelHandler):  # the lane: one query at a time, in order
            answered: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            query = Query(header, answered.set_result)
            decode_into(query, self._handler, payload)
            self.lane().submit(query)
            return (await answered)[HEADER_LENGTH.size :]
        async with self._lock:
            t0 = time.perf_counter()
            code, error, outputs = 200, None, b"[]"
            try:
                outputs = await self._handler.run(
                    int(header["batch"]), payload, header.get("json_length")
                )
            except BadRequest as exc:
                code, error = 400, str(exc)
            except Exception as exc:  # the user's model failed: an answer, not a dead worker
                code, error = 500, f"model raised {type(exc).__name__}: {exc}"
            times = getattr(self._handler, "last_times", None)  # a model's own split, if any
            service_ms = (time.perf_counter() - t0) * 1000.0
            self._served += 1
        reply = {"qid": header.get("qid"), "service_ms": service_ms, "code": code}
        if error is not None:
            reply["error"] = error
        if code == 200 and times is not None:
            reply["prepare_ms"], reply["infer_ms"] = times.prepare_ms, times.infer_ms
        return frame(reply, outputs)


async def _bind(spec: WorkerSpec, service: WorkerService) -> tuple[Server, int]:
    start = TRANSPORTS.get(spec.transport).serve
    try:
        if spec.transport == "tcp" and service.pipelined:  # the same frames, received in place
            return await start_lane_server(
                spec.host, spec.port, service.accept, service.buffers, service.stop
            )
        return await start(spec.host, spec.port, service.handle, service.description)
    except OSError as exc:
        raise ConfigError(
            f"worker could not bind {spec.host}:{spec.port} ({exc}).",
            "pick a free port, or 0 for any.",
        ) from None


async def serve_worker(spec: WorkerSpec, handler: Handler) -> None:
    """Run until SIGINT/SIGTERM (or the parent process is gone); print the bound port."""
    tighten_timer_slack()
    service = WorkerService(spec, handler)
    server, port = await _bind(spec, service)
    settle_heap()
    print(f"{READY_LINE} port={port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(_watch_parent(spec.parent_pid, stop))
    await stop.wait()
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    await server.stop()
    service.stop()  # a gRPC server does not end the compute lane itself


class HostedInstance(threading.Thread):
    """One instance of a co-hosted group: its own thread, event loop, socket, RNG and lock.

    A thread (not a coroutine on a shared loop) so that the replayed sleep keeps its
    ``time.sleep`` tail without stalling the other instances (the GIL is released while
    sleeping), and so that each instance still serves exactly one query at a time.
    """

    def __init__(self, spec: WorkerSpec, profile: LatencyProfile | None) -> None:
        super().__init__(name=f"kairos-instance-{spec.seed}", daemon=True)
        self.spec = spec
        self._profile = profile
        self.bound = threading.Event()
        self.port: int | None = None
        self.error: BaseException | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None

    def run(self) -> None:
        tighten_timer_slack()  # the slack is per thread
        try:
            run_event_loop(self._main())
        except BaseException as exc:  # reported to the main thread, which exits the process
            self.error = exc
        finally:
            self.bound.set()

    async def _main(self) -> None:
        self._event_loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        service = WorkerService(self.spec, make_handler(self.spec, self._profile))
        server, self.port = await _bind(self.spec, service)
        self.bound.set()
        await self._stop_event.wait()
        await server.stop()

    def stop(self) -> None:
        loop, stop = self._event_loop, self._stop_event
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop just closed
                loop.call_soon_threadsafe(stop.set)


def serve_group(specs: list[WorkerSpec], profile: LatencyProfile | None) -> None:
    """Co-host several instances in this process (``--instances N``); print their ports.

    The process ends (so a supervisor restarts the whole group) on SIGINT/SIGTERM, when the
    parent is gone, or when any instance's thread dies: a group is healthy only as a whole.
    """
    tighten_timer_slack()
    hosted = [HostedInstance(spec, profile) for spec in specs]
    for h in hosted:
        h.start()
    for h in hosted:
        h.bound.wait()
    failed = next((h.error for h in hosted if h.error is not None), None)
    if failed is not None:
        raise failed
    settle_heap()
    print(f"{READY_LINE} port={','.join(str(h.port) for h in hosted)}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    parent = specs[0].parent_pid
    while not stop.wait(0.5):
        if parent is not None and os.getppid() != parent:
            print(f"kairos worker: parent {parent} is gone; exiting", file=sys.stderr, flush=True)
            break
        if any(not h.is_alive() for h in hosted):
            print("kairos worker: an instance thread died; exiting", file=sys.stderr, flush=True)
            for h in hosted:
                h.stop()
            sys.exit(1)
    for h in hosted:
        h.stop()
    for h in hosted:
        h.join(5.0)


async def _watch_parent(parent_pid: int | None, stop: asyncio.Event) -> None:
    """A supervised worker must not outlive a router that was killed without cleanup."""
    if parent_pid is None:
        return
    while os.getppid() == parent_pid:
        await asyncio.sleep(0.5)
    print(f"kairos worker: parent {parent_pid} is gone; exiting", file=sys.stderr, flush=True)
    stop.set()


def run_worker(spec: WorkerSpec, instances: int = 1) -> None:
    """Serve ``instances`` instances (ports ``spec.port``, +1, ...; seeds ``spec.seed``, +1, ...)
    until stopped; several are co-hosted in this process (replay mode only). ``local_type``
    confines the process to a local instance type (see ``cpushare.resolve``)."""
    check_bind_host(spec.host)
    TIME_SCALE.check(spec.time_scale)
    INSTANCES.check(instances)
    WORKER_MODES.check(spec.mode)
    TRANSPORTS.check(spec.transport)
    if spec.port and spec.port + instances - 1 > PORT.hi:
        raise ConfigError(
            f"--port {spec.port} with --instances {instances} runs past port {int(PORT.hi)}.",
            "pass a lower --port, or --port 0 for free ports.",
        )
    runs_model = spec.mode == "model" or spec.handler is not None
    if instances > 1 and runs_model:
        raise ConfigError(
            f"--instances {instances} co-hosts replay instances only (mode {spec.mode!r}).",
            "run one process per instance for a real model: its compute needs its own core.",
        )
    shape = cpushare.resolve(spec.local_type, spec.instance_type, runs_model)
    cores: tuple[int, ...] = ()
    if shape is None:
        pin_to_cpus(spec.cpus)  # before any thread starts: they inherit it
    else:
        cores = cpushare.pin_cores(shape, spec.cpus)
        spec = replace(spec, threads=spec.threads or shape.threads)
    profile = None
    if not runs_model:  # only a replay worker reads its type's profile
        profiles = load_profiles(spec.profiles_path) if spec.profiles_path else default_profiles()
        profile = profiles.get(spec.model, spec.instance_type)
    specs = [
        replace(spec, port=spec.port + k if spec.port else 0, seed=spec.seed + k)
        for k in range(instances)
    ]
    # The model loads (imports torch, builds the weights) before the CPU cap: start-up is not
    # service time, and under a quarter core's quota it took four times as long. Every query
    # is served under the cap: it is set before the port is bound and announced.
    handler = make_handler(specs[0], profile) if instances == 1 else None
    if shape is not None:
        done = cpushare.cap(shape, cores)
        print(f"kairos worker: {done.describe()}", file=sys.stderr, flush=True)
    if handler is not None:
        run_event_loop(serve_worker(specs[0], handler))
    else:
        serve_group(specs, profile)
