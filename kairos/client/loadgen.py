"""Open-loop load generator for a KServe v2 endpoint, and the live allowable-throughput search.

Open loop: every query's send time is fixed in advance (Poisson arrivals, batch sizes from
the mix, both seeded) and each query is sent by its own task at that time, on a connection
pool without a size limit, so a slow server never slows the arrivals down (the measured
``send_lag`` says how late the generator itself was). The request tensors follow the
model's metadata (``GET /v2/models/{model}``). With a time-scaled pool the generator reads
the router's ``time_scale`` and compresses arrival gaps by it, reporting latencies in
profile milliseconds.

``replay_trace`` sends a trace's arrivals the same way (``kairos loadgen --trace``): its gaps
compressed by the router's time scale, like Poisson load, every query counted (no warm-up).

``find_capacity`` searches the highest rate at which 99% of queries meet QoS the way the
simulator's ``allowable_throughput`` does: bracket by multiplying or dividing the rate by a
step, then bisect geometrically; each trial is a fresh run with the same seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import orjson

from kairos.aio import settle_heap
from kairos.client.http import HttpPool
from kairos.errors import ConfigError, RuntimeServiceError
from kairos.limits import DURATION_S, MAX_IN_FLIGHT, MAX_LOADGEN_QUERIES
from kairos.protocol.tensors import BINARY_HEADER, DATATYPES, TensorSpec, parse_specs
from kairos.scenario import QOS_QUANTILE
from kairos.sim.search import drive_async, rate_search
from kairos.workload import (
    BatchMix,
    QueryStream,
    check_batches_within,
    check_rate_qps,
    poisson_stream,
)

MAX_TRIAL_S = 120.0
# The live rate search stops when its passing and failing rates are within this fraction.
LIVE_PRECISION = 0.05


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


NO_ANSWER = -1  # status recorded for a query whose connection failed or timed out
UNREADABLE = -2  # status recorded for a 200 whose body was not the JSON the router sends


@dataclass(frozen=True)
class LoadReport:
    """Counts over all queries; latency and QoS over the measured (post-warm-up) ones.

    ``sent`` = ``completed`` (200) + ``rejected`` (503) + ``errors`` (any other status, or no
    answer at all); ``no_answer`` counts the errors without an HTTP answer (connection
    refused, reset or timed out), and ``status_counts`` breaks all of them down by status
    (``no_answer`` and ``unreadable`` by name).
    """

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
    no_answer: int = 0

    @property
    def passed(self) -> bool:
        """The run's check: 99% of the measured queries answered 200 within QoS."""
        return self.measured > 0 and self.qos_met_fraction >= QOS_QUANTILE

    def verdict(self) -> str:
        """One line saying whether the check passed, and why not."""
        share = f"{self.qos_met_fraction:.2%} of {self.measured} measured queries"
        line = f"{share} answered 200 within QoS {self.qos_ms:g} ms (need {QOS_QUANTILE:.0%})"
        if self.errors:
            line += f"; {self.errors} errors ({self.no_answer} without an answer)"
        if self.rejected:
            line += f"; {self.rejected} rejected with 503"
        return ("passed: " if self.passed else "failed: ") + line

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
    return {"Authorization": f"Bearer {token}"} if token else {}


async def fetch_info(
    url: str, model: str, token: str | None = None, timeout_s: float = 10.0
) -> ServerInfo:
    """The model's metadata from ``GET /v2/models/{model}``."""
    pool = HttpPool(url, timeout_s)
    target = f"{url.rstrip('/')}/v2/models/{model}"
    try:
        response = await pool.fetch("GET", f"/v2/models/{model}", _headers(token))
    except OSError as exc:
        raise RuntimeServiceError(
            f"cannot reach {target} ({exc or type(exc).__name__}).",
            "start the router (kairos serve) or fix --url.",
        ) from None
    finally:
        pool.close()
    if response.status != 200:
        raise RuntimeServiceError(
            f"GET {target} answered HTTP {response.status}: {response.body[:200]!r}.",
            "check --model and --api-token match the router.",
        )
    try:
        doc = orjson.loads(response.body)
        params = doc.get("parameters", {})
        inputs = parse_specs(doc.get("inputs")) or (TensorSpec("input", "FP32", (-1, 1)),)
        return ServerInfo(
            inputs=inputs,
            qos_ms=float(params.get("qos_ms", math.inf)),
            time_scale=float(params.get("time_scale", 1.0)),
            capacity_hint_qps=float(params.get("capacity_hint_qps", 100.0)),
            max_batch=int(params.get("max_batch", 1000)),
        )
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise RuntimeServiceError(
            f"GET {target} answered metadata that is not a Kairos router's ({exc}).",
            "point --url at a kairos serve router.",
        ) from None


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
            item: dict[str, Any] = {
                "name": spec.name,
                "datatype": spec.datatype,
                "shape": list(arr.shape),
            }
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


def _raise_open_files_limit(wanted: int) -> None:
    """Each query in flight holds a connection: lift the soft file limit to fit, if allowed."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def check_load_size(rate_qps: float, duration_s: float) -> int:
    """Queries a run of ``rate_qps`` for ``duration_s`` sends; refused above the cap."""
    check_rate_qps(rate_qps)
    DURATION_S.check(duration_s)
    n = max(1, round(rate_qps * duration_s))
    if n > MAX_LOADGEN_QUERIES:
        raise ConfigError(
            f"--rate-qps {rate_qps:g} for --duration-s {duration_s:g} is {n:,} queries, above "
            f"the cap of {MAX_LOADGEN_QUERIES:,} per run (docs/limits.md).",
            "lower --rate-qps or --duration-s, or run several shorter runs.",
        )
    return n


@dataclass(frozen=True, eq=False)
class QueryRecords:
    """Per-query outcomes of one run, in send order: the HTTP status (or ``NO_ANSWER`` /
    ``UNREADABLE``), and when it was sent and answered (``time.perf_counter``)."""

    status: np.ndarray
    send_t: np.ndarray
    done_t: np.ndarray


async def run_load(
    spec: LoadSpec, *, stream: QueryStream | None = None, info: ServerInfo | None = None
) -> LoadReport:
    """Send ``stream`` (default: Poisson at ``spec.rate_qps`` for ``spec.duration_s``).

    Every query is accounted for in the report, whatever the server does (answers, refuses,
    resets, stops answering, goes away); errors of the run itself (bad settings, a server
    that cannot be reached at the start) raise before anything is sent.
    """
    report, _ = await run_load_records(spec, stream=stream, info=info)
    return report


async def run_load_records(
    spec: LoadSpec, *, stream: QueryStream | None = None, info: ServerInfo | None = None
) -> tuple[LoadReport, QueryRecords]:
    """``run_load``, with the per-query records (for fault-injection benchmarks)."""
    n = check_load_size(spec.rate_qps, spec.duration_s) if stream is None else len(stream)
    if n > MAX_LOADGEN_QUERIES:
        raise ConfigError(
            f"a stream of {n:,} queries is above the cap of {MAX_LOADGEN_QUERIES:,} per run.",
            "send fewer queries per run.",
        )
    if info is None:
        info = await fetch_info(spec.url, spec.model, spec.api_token)
    largest = spec.mix.max_batch if stream is None else int(stream.batch_size.max())
    check_batches_within(
        largest,
        f"batch mix {spec.mix.name!r}" if stream is None else "the query stream",
        info.max_batch,
        f"model {spec.model!r} at {spec.url}",
    )
    if stream is None:
        stream = poisson_stream(spec.rate_qps, n, spec.mix, np.random.default_rng(spec.seed))
    pool = HttpPool(spec.url, spec.request_timeout_s)
    try:
        return await _drive(pool, spec, stream, info)
    finally:
        pool.close()


async def replay_trace(
    url: str,
    model: str,
    stream: QueryStream,
    *,
    seed: int = 0,
    api_token: str | None = None,
    binary: bool = True,
    duration_s: float | None = None,
    info: ServerInfo | None = None,
) -> LoadReport:
    """Send ``stream`` (a trace, in profile seconds) open-loop, as ``run_load`` sends Poisson
    load: at the router's time scale, at most ``MAX_LOADGEN_QUERIES`` queries and
    ``DURATION_S`` seconds of wall time (``duration_s``: only the trace's first seconds).
    Every query of the trace is measured: its first ones are part of it, not a warm-up."""
    if len(stream) == 0:
        raise ConfigError("the trace has no queries.", "replay a trace with at least one query.")
    arrival = stream.arrival_s
    if duration_s is not None:
        DURATION_S.check(duration_s)
        n = int(np.searchsorted(arrival, arrival[0] + duration_s, side="left"))
        stream = QueryStream(arrival[:n], stream.batch_size[:n])
        arrival = stream.arrival_s
    if len(stream) > MAX_LOADGEN_QUERIES:
        raise ConfigError(
            f"the trace has {len(stream):,} queries, above the cap of {MAX_LOADGEN_QUERIES:,} "
            "per run (docs/limits.md).",
            "replay a part of it (--duration-s), or split it into several runs.",
        )
    if info is None:
        info = await fetch_info(url, model, api_token)
    span_s = float(arrival[-1] - arrival[0])
    wall_s = span_s * info.clock_scale
    if wall_s > DURATION_S.hi:
        raise ConfigError(
            f"the trace spans {span_s:g} s, {wall_s:g} s of wall time at the router's time "
            f"scale {info.clock_scale:g}: above {DURATION_S.hi:g} s per run (docs/limits.md).",
            "replay a part of it (--duration-s), or serve with a smaller --time-scale.",
        )
    sizes, counts = np.unique(stream.batch_size, return_counts=True)
    spec = LoadSpec(
        url,
        model,
        rate_qps=len(stream) / span_s if span_s > 0 else float(len(stream)),
        duration_s=max(span_s, 1e-9),
        mix=BatchMix("trace", sizes, counts / counts.sum()),
        seed=seed,
        api_token=api_token,
        warmup_fraction=0.0,
        binary=binary,
    )
    return await run_load(spec, stream=stream, info=info)


class _Tally:
    """Per-query outcomes of one run (arrays sized once, so memory is bounded by the run)."""

    def __init__(self, n: int) -> None:
        self.status = np.zeros(n, dtype=np.int64)
        self.latency_ms = np.full(n, np.nan)
        self.server_ms = np.full(n, np.nan)  # router queue + service time, profile ms
        self.inside_ms = np.full(n, np.nan)  # the router's own overhead, wall ms
        self.lag_ms = np.zeros(n)
        self.done_t = np.full(n, np.nan)


async def _drive(
    pool: HttpPool, spec: LoadSpec, stream: QueryStream, info: ServerInfo
) -> tuple[LoadReport, QueryRecords]:
    n = len(stream)
    scale = info.clock_scale
    path = f"/v2/models/{spec.model}/infer"
    bodies = BodyFactory(info.inputs, spec.seed)
    batches = stream.batch_size.tolist()
    requests = {}
    for b in set(batches):
        body, json_length = bodies.encoded(int(b), spec.binary)
        headers = _headers(spec.api_token) | {"Content-Type": "application/json"}
        if json_length is not None:
            headers |= {"Content-Type": "application/octet-stream", BINARY_HEADER: str(json_length)}
        requests[int(b)] = pool.target.request_bytes("POST", path, body, headers)
    tally = _Tally(n)
    in_flight = 0
    room = asyncio.Event()  # set while fewer than MAX_IN_FLIGHT queries are unanswered
    room.set()

    async def one(i: int, request: bytes) -> None:
        nonlocal in_flight
        t_send = time.perf_counter()
        try:
            # The response's arrival is stamped where its last byte is read, so the time
            # this task waits to be resumed is not counted as the server's.
            response = await pool.send(request)
            code, t_done = response.status, response.done_t
        except (OSError, RuntimeError):  # refused, reset, closed, timed out
            code, t_done, response = NO_ANSWER, time.perf_counter(), None
        if code == 200 and response is not None:
            try:
                params = orjson.loads(response.body).get("parameters", {})
                tally.server_ms[i] = float(params.get("queue_ms", 0.0)) + float(
                    params.get("service_ms", 0.0)
                )
                tally.inside_ms[i] = float(params.get("overhead_ms", math.nan))
            except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
                code = UNREADABLE
        tally.status[i] = code
        tally.done_t[i] = t_done
        tally.latency_ms[i] = (t_done - t_send) * 1000.0 / scale
        in_flight -= 1
        room.set()

    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    _raise_open_files_limit(MAX_IN_FLIGHT + 256)
    # Concurrency ~ rate x latency; a latency of 50 ms wall covers the runs that matter.
    with contextlib.suppress(OSError):  # a server gone already shows in the counts
        await pool.warm(min(256, max(4, math.ceil(n / max(_span_s(stream, scale), 1e-3) * 0.05))))
    settle_heap()
    offsets = (stream.arrival_s - stream.arrival_s[0]) * scale
    start = time.perf_counter() + 0.01
    for i in range(n):
        target = start + float(offsets[i])
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        while in_flight >= MAX_IN_FLIGHT:  # bounded memory: the send waits (lag shows it)
            room.clear()
            await room.wait()
        tally.lag_ms[i] = max(0.0, time.perf_counter() - target) * 1000.0
        in_flight += 1
        task = loop.create_task(one(i, requests[int(batches[i])]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:  # only unfinished ones are kept (done ones remove themselves)
        await asyncio.gather(*tasks)
    send_t = start + offsets
    records = QueryRecords(tally.status, send_t + tally.lag_ms / 1000.0, tally.done_t)
    return _summarise(spec, info, tally, send_t), records


def _span_s(stream: QueryStream, scale: float) -> float:
    return float(stream.arrival_s[-1] - stream.arrival_s[0]) * scale


def _summarise(spec: LoadSpec, info: ServerInfo, tally: _Tally, send_t: np.ndarray) -> LoadReport:
    status = tally.status
    n = len(status)
    warm = min(int(n * spec.warmup_fraction), n - 1)
    ok = status == 200
    m_ok = ok[warm:]
    lat = tally.latency_ms[warm:][m_ok]
    measured = n - warm
    span = float(np.nanmax(tally.done_t[warm:]) - send_t[warm]) if measured else 0.0
    p50, p99 = np.percentile(lat, [50, 99]) if lat.size else (math.nan, math.nan)
    within = int(np.sum(lat <= info.qos_ms))
    overhead = (tally.latency_ms - tally.server_ms)[warm:][m_ok] * info.clock_scale
    o50, o99 = np.percentile(overhead, [50, 99]) if overhead.size else (math.nan, math.nan)
    inside = tally.inside_ms[warm:][m_ok]
    inside = inside[~np.isnan(inside)]
    r50, r99 = np.percentile(inside, [50, 99]) if inside.size else (math.nan, math.nan)
    codes, counts = np.unique(status, return_counts=True)
    names = {NO_ANSWER: "no_answer", UNREADABLE: "unreadable"}
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
        send_lag_p99_ms=float(np.percentile(tally.lag_ms, 99)),
        router_overhead_p50_ms=float(r50),
        router_overhead_p99_ms=float(r99),
        status_counts={
            names.get(int(c), str(int(c))): int(k) for c, k in zip(codes, counts, strict=True)
        },
        no_answer=int(np.sum(status == NO_ANSWER)),
    )


async def search_rate(
    passes: Callable[[float], Awaitable[bool]],
    guess_qps: float,
    precision: float = LIVE_PRECISION,
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
    precision: float = LIVE_PRECISION,
    guess_qps: float | None = None,
    step: float = 2.0,
    min_queries: int = 1000,
    max_steps: int = 10,
    progress: Callable[[LoadReport], None] | None = None,
) -> CapacityReport:
    """Live allowable throughput: highest rate with >= 99% of measured queries within QoS.

    Each trial is a fresh ``run_load`` of at least ``spec.duration_s`` (0: ``min_queries``
    alone sets its length); the search brackets with at most ``max_steps`` steps of ``step``,
    so a pool that fails at every rate costs a bounded time. The model's metadata is read
    once; the first trial refuses a batch mix the model cannot take, before sending.
    """
    trials: list[LoadReport] = []
    info = await fetch_info(spec.url, spec.model, spec.api_token)

    async def passes(rate: float) -> bool:
        # A p99 judged on a handful of queries is noise: every trial gets min_queries (but
        # runs no longer than MAX_TRIAL_S unless --duration-s asks for more).
        seconds = max(spec.duration_s, min(min_queries / rate, MAX_TRIAL_S))
        seconds = min(seconds, MAX_LOADGEN_QUERIES / rate)  # a trial stays within the cap
        report = await run_load(replace(spec, rate_qps=rate, duration_s=seconds), info=info)
        trials.append(report)
        if progress is not None:
            progress(report)
        return report.passed

    guess = guess_qps if guess_qps is not None else 0.6 * info.capacity_hint_qps
    lo, hi = await search_rate(passes, guess, precision, step, max_steps)
    return CapacityReport(lo, hi, tuple(trials))
