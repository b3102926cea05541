"""Open-loop load generator for a KServe v2 endpoint, and the live allowable-throughput search.

Open loop: every query's send time is fixed in advance (Poisson arrivals, batch sizes from
the mix, both seeded) and each query is sent by its own task at that time, on a connection
pool without a size limit, so a slow server never slows the arrivals down (the measured
``send_lag`` says how late the generator itself was). The request tensors follow the
model's metadata (``GET /v2/models/{model}``). With a time-scaled pool the generator reads
the router's ``time_scale`` and compresses arrival gaps by it, reporting latencies in
profile milliseconds.

``find_capacity`` searches the highest rate at which 99% of queries meet QoS the way the
simulator's ``allowable_throughput`` does: bracket by multiplying or dividing the rate by a
step, then bisect geometrically; each trial is a fresh run with the same seed.
"""

from __future__ import annotations

import asyncio
import math
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import aiohttp
import numpy as np
import orjson

from kairos.errors import ConfigError, RuntimeServiceError
from kairos.runtime.aio import settle_heap
from kairos.runtime.wire import BINARY_HEADER, DATATYPES, TensorSpec, parse_specs
from kairos.scenario import QOS_QUANTILE
from kairos.sim.search import drive_async, rate_search
from kairos.workload import BatchMix, QueryStream, check_rate_qps, poisson_stream

MAX_TRIAL_S = 120.0


@dataclass(frozen=True)
class LoadSpec:
    url: str
    model: str
    rate_qps: float
    duration_s: float
    mix: BatchMix
    seed: int = 0
    api_token: str | None = None
    warmup_fraction: float = 0.1
    request_timeout_s: float = 120.0
    binary: bool = True  # tensors in the binary extension (as Triton's clients), else JSON


@dataclass(frozen=True)
class ServerInfo:
    """What the generator needs from the model's metadata."""

    inputs: tuple[TensorSpec, ...]
    qos_ms: float
    time_scale: float
    capacity_hint_qps: float
    max_batch: int

    @property
    def clock_scale(self) -> float:
        return self.time_scale if self.time_scale > 0 else 1.0


@dataclass(frozen=True)
class LoadReport:
    """Counts over all queries; latency and QoS over the measured (post-warm-up) ones."""

    rate_qps: float
    sent: int
    completed: int
    rejected: int
    errors: int
    measured: int
    throughput_qps: float
    p50_ms: float
    p99_ms: float
    qos_ms: float
    qos_met_fraction: float
    overhead_p50_ms: float  # wall ms per query beyond the router's queue + service time
    overhead_p99_ms: float
    send_lag_p99_ms: float
    # The same, as the router measured it inside its process (no client or network legs).
    router_overhead_p50_ms: float = math.nan
    router_overhead_p99_ms: float = math.nan
    status_counts: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.measured > 0 and self.qos_met_fraction >= QOS_QUANTILE

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed}


@dataclass(frozen=True)
class CapacityReport:
    allowable_qps: float
    failing_qps: float
    trials: tuple[LoadReport, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "allowable_qps": self.allowable_qps,
            "failing_qps": self.failing_qps,
            "trials": [t.as_dict() for t in self.trials],
        }


def _headers(token: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


async def fetch_info(
    session: aiohttp.ClientSession, url: str, model: str, token: str | None = None
) -> ServerInfo:
    target = f"{url.rstrip('/')}/v2/models/{model}"
    try:
        async with session.get(target, headers=_headers(token)) as resp:
            raw = await resp.read()
            status = resp.status
    except aiohttp.ClientError as exc:
        raise RuntimeServiceError(
            f"cannot reach {target} ({exc}).", "start the router (kairos serve) or fix --url."
        ) from None
    if status != 200:
        raise RuntimeServiceError(
            f"GET {target} answered HTTP {status}: {raw[:200]!r}.",
            "check --model and --api-token match the router.",
        )
    doc = orjson.loads(raw)
    params = doc.get("parameters", {})
    inputs = parse_specs(doc.get("inputs")) or (TensorSpec("input", "FP32", (-1, 1)),)
    return ServerInfo(
        inputs=inputs,
        qos_ms=float(params.get("qos_ms", math.inf)),
        time_scale=float(params.get("time_scale", 1.0)),
        capacity_hint_qps=float(params.get("capacity_hint_qps", 100.0)),
        max_batch=int(params.get("max_batch", 1000)),
    )


class BodyFactory:
    """Encoded request bodies, one per batch size and format (made once, seeded).

    ``body`` puts the values in JSON ``data``; ``binary_body`` uses the binary tensor data
    extension (JSON part, then each tensor's raw little-endian bytes), the way Triton's
    clients send numpy arrays, and returns the JSON part's length for the
    ``Inference-Header-Content-Length`` header.
    """

    def __init__(self, inputs: tuple[TensorSpec, ...], seed: int) -> None:
        self._inputs = inputs
        self._rng = np.random.default_rng(seed)
        self._arrays: dict[int, list[np.ndarray]] = {}
        self._cache: dict[tuple[int, bool], tuple[bytes, int | None]] = {}

    def body(self, batch: int) -> bytes:
        return self.encoded(batch, binary=False)[0]

    def binary_body(self, batch: int) -> tuple[bytes, int]:
        body, json_length = self.encoded(batch, binary=True)
        assert json_length is not None
        return body, json_length

    def encoded(self, batch: int, binary: bool) -> tuple[bytes, int | None]:
        cached = self._cache.get((batch, binary))
        if cached is None:
            cached = self._encode(self._values(batch), binary)
            self._cache[(batch, binary)] = cached
        return cached

    def _values(self, batch: int) -> list[np.ndarray]:
        arrays = self._arrays.get(batch)
        if arrays is None:
            arrays = self._arrays[batch] = [self._tensor(s, batch) for s in self._inputs]
        return arrays

    def _tensor(self, spec: TensorSpec, batch: int) -> np.ndarray:
        shape = [batch] + [d if d >= 0 else 1 for d in spec.shape[1:]]
        n = math.prod(shape)
        dtype = np.dtype(DATATYPES[spec.datatype])
        values: np.ndarray
        if dtype.kind == "f":
            values = np.round(self._rng.random(n), 3)
        elif dtype.kind == "b":
            values = self._rng.random(n) < 0.5
        else:
            values = self._rng.integers(0, 100, n)
        return values.astype(dtype).reshape(shape)

    def _encode(self, arrays: list[np.ndarray], binary: bool) -> tuple[bytes, int | None]:
        items: list[dict[str, Any]] = []
        raw: list[bytes] = []
        for spec, arr in zip(self._inputs, arrays, strict=True):
            item: dict[str, Any] = {"name": spec.name, "datatype": spec.datatype,
                                    "shape": list(arr.shape)}  # fmt: skip
            if binary:
                data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
                item["parameters"] = {"binary_data_size": len(data)}
                raw.append(data)
            elif arr.dtype.kind == "f":
                # The values were drawn with 3 decimals: writing them so keeps JSON short,
                # and they parse back to exactly the same floats as the binary form.
                item["data"] = np.round(arr.ravel().astype(np.float64), 3).tolist()
            else:
                item["data"] = arr.ravel().tolist()
            items.append(item)
        head = orjson.dumps({"inputs": items})
        return (head + b"".join(raw), len(head)) if binary else (head, None)


class _HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection answering one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        # (status, body, perf_counter() when the whole response had arrived)
        self.waiter: asyncio.Future[tuple[int, bytes, float]] | None = None
        self._buf = bytearray()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self._buf[:end]).lower()
        at = head.find(b"content-length:")
        length = int(head[at + 15 : head.find(b"\r\n", at) if b"\r\n" in head[at:] else None])
        total = end + 4 + length
        if len(self._buf) < total:
            return
        body = bytes(self._buf[end + 4 : total])
        del self._buf[:total]
        if b"connection: close" in head:
            self.closed = True
        waiter, self.waiter = self.waiter, None
        if not waiter.done():
            waiter.set_result((int(head[9:12]), body, time.perf_counter()))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed by the server"))


class HttpPool:
    """A minimal HTTP/1.1 client: keep-alive connections, no size limit, one host.

    aiohttp's client costs about twice the CPU per request; on a 2-core machine shared with
    the router under test, the generator's own cost must stay small.
    """

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urllib.parse.urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._timeout_s = timeout_s
        self._idle: list[_HttpConnection] = []
        self._all: list[_HttpConnection] = []

    def request_bytes(
        self, path: str, body: bytes, token: str | None, json_length: int | None = None
    ) -> bytes:
        extra = f"Authorization: Bearer {token}\r\n" if token else ""
        kind = "application/json"
        if json_length is not None:
            kind = "application/octet-stream"
            extra += f"{BINARY_HEADER}: {json_length}\r\n"
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            f"Content-Type: {kind}\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def send(self, request: bytes) -> tuple[int, bytes, float]:
        """Send one request; (status, body, arrival time of the whole response)."""
        conn = self._idle.pop() if self._idle else await self._connect()
        loop = asyncio.get_running_loop()
        conn.waiter = loop.create_future()
        assert conn.transport is not None
        conn.transport.write(request)
        try:
            async with asyncio.timeout(self._timeout_s):
                result = await conn.waiter
        except BaseException:
            conn.closed = True
            conn.transport.close()
            raise
        if not conn.closed:
            self._idle.append(conn)
        return result

    async def warm(self, n: int) -> None:
        """Open ``n`` connections up front so the run does not pay for them mid-flight."""
        conns = await asyncio.gather(*(self._connect() for _ in range(n - len(self._all))))
        self._idle.extend(conns)

    async def _connect(self) -> _HttpConnection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_HttpConnection, self._host, self._port)
        self._all.append(conn)
        return conn

    def close(self) -> None:
        for conn in self._all:
            if conn.transport is not None:
                conn.transport.close()


async def run_load(
    spec: LoadSpec, *, stream: QueryStream | None = None, info: ServerInfo | None = None
) -> LoadReport:
    """Send ``stream`` (default: Poisson at ``spec.rate_qps`` for ``spec.duration_s``)."""
    check_rate_qps(spec.rate_qps)
    if stream is None:
        if spec.duration_s <= 0:
            raise ConfigError(
                f"duration {spec.duration_s!r} s is not positive.", "pass --duration-s > 0."
            )
        n = max(1, round(spec.rate_qps * spec.duration_s))
        stream = poisson_stream(spec.rate_qps, n, spec.mix, np.random.default_rng(spec.seed))
    if info is None:
        async with aiohttp.ClientSession() as session:
            info = await fetch_info(session, spec.url, spec.model, spec.api_token)
    pool = HttpPool(spec.url, spec.request_timeout_s)
    try:
        return await _drive(pool, spec, stream, info)
    finally:
        pool.close()


async def _drive(pool: HttpPool, spec: LoadSpec, stream: QueryStream, info: ServerInfo
                 ) -> LoadReport:  # fmt: skip
    n = len(stream)
    scale = info.clock_scale
    path = f"{urllib.parse.urlsplit(spec.url).path.rstrip('/')}/v2/models/{spec.model}/infer"
    bodies = BodyFactory(info.inputs, spec.seed)
    batches = np.minimum(stream.batch_size, info.max_batch).tolist()
    requests = {}
    for b in set(batches):
        body, json_length = bodies.encoded(int(b), spec.binary)
        requests[int(b)] = pool.request_bytes(path, body, spec.api_token, json_length)
    status = np.zeros(n, dtype=np.int64)
    latency_ms = np.full(n, np.nan)
    server_ms = np.full(n, np.nan)  # router queue + service time, profile ms
    inside_ms = np.full(n, np.nan)  # the router's own overhead, wall ms
    lag_ms = np.zeros(n)
    done_t = np.full(n, np.nan)

    async def one(i: int, request: bytes) -> None:
        t_send = time.perf_counter()
        try:
            # The response's arrival is stamped where its last byte is read, so the time
            # this task waits to be resumed is not counted as the server's.
            code, raw, t_done = await pool.send(request)
        except (OSError, TimeoutError, ValueError):
            code, raw, t_done = -1, b"", time.perf_counter()
        status[i] = code
        done_t[i] = t_done
        latency_ms[i] = (t_done - t_send) * 1000.0 / scale
        if code == 200:
            params = orjson.loads(raw).get("parameters", {})
            server_ms[i] = float(params.get("queue_ms", 0.0)) + float(params.get("service_ms", 0))
            inside_ms[i] = float(params.get("overhead_ms", math.nan))

    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    # Concurrency ~ rate x latency; a latency of 50 ms wall covers the runs that matter.
    await pool.warm(
        min(256, max(4, math.ceil(len(stream) / max(_span_s(stream, scale), 1e-3) * 0.05)))
    )
    settle_heap()
    offsets = (stream.arrival_s - stream.arrival_s[0]) * scale
    start = time.perf_counter() + 0.01
    for i in range(n):
        target = start + float(offsets[i])
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lag_ms[i] = max(0.0, time.perf_counter() - target) * 1000.0
        tasks.append(loop.create_task(one(i, requests[int(batches[i])])))
    await asyncio.gather(*tasks)
    send_t = start + offsets
    return _summarise(spec, info, status, latency_ms, server_ms, inside_ms, lag_ms, send_t, done_t)


def _span_s(stream: QueryStream, scale: float) -> float:
    return float(stream.arrival_s[-1] - stream.arrival_s[0]) * scale


def _summarise(
    spec: LoadSpec,
    info: ServerInfo,
    status: np.ndarray,
    latency_ms: np.ndarray,
    server_ms: np.ndarray,
    inside_ms: np.ndarray,
    lag_ms: np.ndarray,
    send_t: np.ndarray,
    done_t: np.ndarray,
) -> LoadReport:
    n = len(status)
    warm = min(int(n * spec.warmup_fraction), n - 1)
    ok = status == 200
    m_ok = ok[warm:]
    lat = latency_ms[warm:][m_ok]
    measured = n - warm
    span = float(np.nanmax(done_t[warm:]) - send_t[warm]) if measured else 0.0
    p50, p99 = np.percentile(lat, [50, 99]) if lat.size else (math.nan, math.nan)
    within = int(np.sum(lat <= info.qos_ms))
    overhead = (latency_ms - server_ms)[warm:][m_ok] * info.clock_scale
    o50, o99 = np.percentile(overhead, [50, 99]) if overhead.size else (math.nan, math.nan)
    inside = inside_ms[warm:][m_ok]
    inside = inside[~np.isnan(inside)]
    r50, r99 = np.percentile(inside, [50, 99]) if inside.size else (math.nan, math.nan)
    codes, counts = np.unique(status, return_counts=True)
    return LoadReport(
        rate_qps=spec.rate_qps,
        sent=n,
        completed=int(ok.sum()),
        rejected=int(np.sum(status == 503)),
        errors=int(np.sum(~ok & (status != 503))),
        measured=measured,
        throughput_qps=float(m_ok.sum()) / span * info.clock_scale if span > 0 else 0.0,
        p50_ms=float(p50),
        p99_ms=float(p99),
        qos_ms=info.qos_ms,
        qos_met_fraction=within / measured if measured else 0.0,
        overhead_p50_ms=float(o50),
        overhead_p99_ms=float(o99),
        send_lag_p99_ms=float(np.percentile(lag_ms, 99)),
        router_overhead_p50_ms=float(r50),
        router_overhead_p99_ms=float(r99),
        status_counts={str(int(c)): int(k) for c, k in zip(codes, counts, strict=True)},
    )


async def search_rate(
    passes: Callable[[float], Awaitable[bool]],
    guess_qps: float,
    precision: float = 0.05,
    step: float = 2.0,
    max_steps: int = 10,
) -> tuple[float, float]:
    """(highest passing rate, lowest failing rate): ``kairos.sim.search`` driven by live trials.

    ``step`` can be small when the guess is good (for example the simulated allowable
    throughput). Returns ``(0, hi)`` if nothing passes.
    """
    return await drive_async(rate_search(guess_qps, precision, step, max_steps), passes)


async def find_capacity(
    spec: LoadSpec,
    *,
    precision: float = 0.05,
    guess_qps: float | None = None,
    step: float = 2.0,
    min_queries: int = 1000,
    progress: Callable[[LoadReport], None] | None = None,
) -> CapacityReport:
    """Live allowable throughput: highest rate with >= 99% of measured queries within QoS."""
    trials: list[LoadReport] = []
    async with aiohttp.ClientSession() as session:
        info = await fetch_info(session, spec.url, spec.model, spec.api_token)

    async def passes(rate: float) -> bool:
        # A p99 judged on a handful of queries is noise: every trial gets min_queries (but
        # runs no longer than MAX_TRIAL_S unless --duration-s asks for more).
        seconds = max(spec.duration_s, min(min_queries / rate, MAX_TRIAL_S))
        report = await run_load(replace(spec, rate_qps=rate, duration_s=seconds), info=info)
        trials.append(report)
        if progress is not None:
            progress(report)
        return report.passed

    guess = guess_qps if guess_qps is not None else 0.6 * info.capacity_hint_qps
    lo, hi = await search_rate(passes, guess, precision, step)
    return CapacityReport(lo, hi, tuple(trials))
