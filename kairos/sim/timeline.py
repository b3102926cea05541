"""Replay a trace through a pool that an autoscaler resizes while the trace runs.

The event loop merges four streams in time order: query arrivals (the trace, sorted),
completions (a heap), instances that finish booting (a heap) and control ticks (every
``tick_s`` of trace time). On ties a completion comes first, then a boot, then a tick, then an
arrival, so a tick sees the instances that joined at that instant and decides before the
queries that arrive then. Every event goes through the one ``Driver`` exactly as in the plain
simulator (``kairos.sim.engine``): ``arrive`` and ``complete`` for queries, ``add_instances``
when the autoscaler asks for more, ``up`` when one has booted, ``retire`` when it asks for
fewer. A control tick that changes nothing makes no driver call, so an autoscaler that keeps
one pool reproduces the plain simulator's records exactly.

The run starts at t=0 of the trace's clock (``start_s``; a trace whose times start late pays
for the pool from 0, so shift it to start near 0). There the autoscaler's first decision is
the initial pool, booted at once, so the run does not start empty and no query waits for a
boot that a running service would not wait for; that decision sees the trace's first windows,
as if that traffic had been running before the trace starts.
Instances asked for later join ``CloudSettings.boot_delay_s`` of their type after the tick
that asked; removed ones take no new query, finish the one they serve and are released then
(a booting one is released at once). Each is billed per second from request to release, at
least ``min_charge_s``.

The run ends when every query of the trace has been answered. If queries are queued while no
instance serves or boots (an autoscaler that rented nothing), ticks go on until
``drain_limit_s`` after the last arrival, and what is left unanswered then is a QoS miss
(never a hang). ``qos_share`` counts every query of the trace: one answered later than the
QoS target, or never, is a miss.

Service times follow the plain simulator's common random numbers: one uniform ``u`` per query
from the driver's service stream, turned into a time on each type by the type's inverse CDF.
They are drawn in chunks of the trace, in order, and a chunk's tables are dropped once all its
queries have started, so memory stays bounded on multi-million-query traces.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kairos.catalog import Pool
from kairos.distributor.driver import Driver, PolicyFactory
from kairos.errors import ConfigError, PolicyError
from kairos.scenario import Scenario
from kairos.sim.autoscale import (
    Autoscaler,
    CloudSettings,
    Observation,
    PoolState,
    TrafficWindow,
)
from kairos.sim.records import QueryRecords
from kairos.workload import BatchMix, Query, QueryStream

INF = math.inf


@dataclass(frozen=True)
class TimelineSettings:
    """How a time-varying replay runs (the CLI reads these defaults).

    ``tick_s``: seconds of trace time between two autoscaler decisions (shorter reacts faster
    and costs more decisions). ``short_window_s`` / ``long_window_s``: the traffic windows the
    autoscaler sees (Ray Serve looks back 30 s). ``drain_limit_s``: how long after the last
    arrival queued queries may wait for an instance when none serves or boots, before they
    count as misses. ``chunk_queries``: queries whose service times are drawn at once (a
    power of two; memory, not results, depends on it).
    """

    tick_s: float = 10.0
    short_window_s: float = 30.0
    long_window_s: float = 300.0
    drain_limit_s: float = 600.0
    chunk_queries: int = 1 << 16

    def __post_init__(self) -> None:
        for name in ("tick_s", "short_window_s", "long_window_s", "drain_limit_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 < value <= 86_400.0):
                raise ConfigError(
                    f"{name} {value!r} is not in (0, 86400] seconds.",
                    f"give {name} in seconds, e.g. {getattr(TimelineSettings, name)}.",
                )
        c = self.chunk_queries
        if c < 1 or c & (c - 1):
            raise ConfigError(
                f"chunk_queries {c!r} is not a power of two.", "use e.g. 65536 (2**16)."
            )


@dataclass(frozen=True)
class Rental:
    """One instance's life: asked for, serving from (None if released while booting), released."""

    instance: int
    instance_type: str
    price_per_hr: float
    requested_s: float
    ready_s: float | None
    released_s: float

    def billed_s(self, cloud: CloudSettings) -> float:
        return cloud.charge_s(self.released_s - self.requested_s)

    def cost_dollars(self, cloud: CloudSettings) -> float:
        return self.price_per_hr * self.billed_s(cloud) / 3600.0


@dataclass(frozen=True)
class ScaleAction:
    """The autoscaler changed the rented pool (serving plus booting) at ``time_s``."""

    time_s: float
    from_pool: Pool
    to_pool: Pool


@dataclass(frozen=True, eq=False)
class MinuteSeries:
    """One entry per minute of the run, by arrival minute (``start_s`` is each minute's start).

    ``qos_share``: share of that minute's arrivals answered within QoS (1.0 for a minute
    without arrivals); ``p99_ms``: nearest-rank p99 of their latencies (inf when more than 1%
    went unanswered; NaN without arrivals); ``pool``: mean rented instances per type over the
    minute; ``cost_per_hr``: mean rented $/h over the minute (minimum charges not spread in).
    """

    start_s: np.ndarray
    rate_qps: np.ndarray
    qos_share: np.ndarray
    p99_ms: np.ndarray
    cost_per_hr: np.ndarray
    pool: Mapping[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.start_s)


@dataclass(frozen=True, eq=False)
class TimelineResult:
    autoscaler: str
    policy: str
    qos_ms: float
    cost_dollars: float
    qos_share: float
    queries: int
    unanswered: int
    start_s: float
    end_s: float
    actions: tuple[ScaleAction, ...]
    rentals: tuple[Rental, ...]
    minutes: MinuteSeries
    records: QueryRecords  # unanswered queries: start/finish NaN, instance -1

    @property
    def scale_actions(self) -> int:
        return len(self.actions)


def simulate_timeline(
    scenario: Scenario,
    autoscaler: Autoscaler,
    policy: str | PolicyFactory,
    stream: QueryStream,
    *,
    cloud: CloudSettings | None = None,
    settings: TimelineSettings | None = None,
    seed: int = 0,
    policy_options: Mapping[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> TimelineResult:
    """Replay ``stream`` with ``autoscaler`` renting the pool; ``progress(k)`` is called as
    each chunk of ``k`` queries starts arriving."""
    if len(stream) == 0:
        raise ConfigError("the trace has no queries.", "replay a trace with at least one query.")
    replay = _Replay(
        scenario,
        autoscaler,
        policy,
        stream,
        cloud or CloudSettings(),
        settings or TimelineSettings(),
        seed,
        policy_options,
    )
    replay.run(progress)
    return _result(replay)


@dataclass
class _Fleet:
    """Which instance ids serve, boot and drain, per type, and each one's rental so far."""

    serving: dict[str, set[int]] = field(default_factory=dict)
    booting: dict[str, set[int]] = field(default_factory=dict)
    draining: set[int] = field(default_factory=set)
    requested_s: dict[int, float] = field(default_factory=dict)
    ready_s: dict[int, float] = field(default_factory=dict)
    types: dict[int, str] = field(default_factory=dict)
    rentals: list[Rental] = field(default_factory=list)

    def counts(self, which: dict[str, set[int]]) -> Pool:
        return Pool.of({t: len(ids) for t, ids in which.items()})

    def rented(self) -> Pool:
        counts: dict[str, int] = {}
        for which in (self.serving, self.booting):
            for t, ids in which.items():
                counts[t] = counts.get(t, 0) + len(ids)
        return Pool.of(counts)

    def request(self, j: int, instance_type: str, now_s: float, booted: bool) -> None:
        self.types[j] = instance_type
        self.requested_s[j] = now_s
        if booted:
            self.ready_s[j] = now_s
            self.serving.setdefault(instance_type, set()).add(j)
        else:
            self.booting.setdefault(instance_type, set()).add(j)

    def booted(self, j: int, now_s: float) -> bool:
        """Move ``j`` from booting to serving; False when it was released while booting."""
        t = self.types[j]
        ids = self.booting.get(t, set())
        if j not in ids:
            return False
        ids.discard(j)
        self.ready_s[j] = now_s
        self.serving.setdefault(t, set()).add(j)
        return True

    def release(self, j: int, now_s: float, price_per_hr: float) -> None:
        t = self.types[j]
        self.serving.get(t, set()).discard(j)
        self.booting.get(t, set()).discard(j)
        self.draining.discard(j)
        self.rentals.append(
            Rental(j, t, price_per_hr, self.requested_s[j], self.ready_s.get(j), now_s)
        )


class _Traffic:
    """The traffic windows an autoscaler sees, read from the trace up to the last arrival."""

    def __init__(self, stream: QueryStream, settings: TimelineSettings, start_s: float) -> None:
        self.stream = stream
        self.settings = settings
        self.start_s = start_s

    def window(self, now: float, arrived: int, window_s: float) -> TrafficWindow:
        """The arrivals of the last ``window_s`` (fewer at the start of the run)."""
        span = min(window_s, now - self.start_s)
        arrival = self.stream.arrival_s
        lo = int(np.searchsorted(arrival[:arrived], now - span, side="left"))
        return self.between(lo, arrived, span)

    def between(self, lo: int, hi: int, span: float) -> TrafficWindow:
        count = hi - lo
        mix = None
        peak = 0.0
        if count:
            support, weight = np.unique(self.stream.batch_size[lo:hi], return_counts=True)
            mix = BatchMix("observed", support, weight / count)
            # Arrivals are sorted: the busiest second is the longest run of one floor value.
            edges = np.flatnonzero(np.diff(np.floor(self.stream.arrival_s[lo:hi])))
            peak = float(np.diff(edges, prepend=-1, append=count - 1).max())
        return TrafficWindow(span, count, count / span if span > 0 else 0.0, mix, peak)

    def first(self) -> Observation:
        """What the first decision sees: the trace's first windows, as if that traffic had
        been running before the trace starts (a service does not begin from nothing at the
        trace's first second, and the initial pool needs a rate to be planned for)."""
        s, t0 = self.settings, self.start_s
        empty = Pool(())
        windows = []
        for w in (s.short_window_s, s.long_window_s):
            hi = int(np.searchsorted(self.stream.arrival_s, t0 + w, side="left"))
            windows.append(self.between(0, hi, w))
        return Observation(t0, PoolState(empty, empty, 0), 0, 0, windows[0], windows[1])


class _Replay:
    """The state of one replay; ``run`` is the event loop, the rest its rare events."""

    def __init__(
        self,
        scenario: Scenario,
        autoscaler: Autoscaler,
        policy: str | PolicyFactory,
        stream: QueryStream,
        cloud: CloudSettings,
        settings: TimelineSettings,
        seed: int,
        policy_options: Mapping[str, Any] | None,
    ) -> None:
        self.scenario = scenario
        self.autoscaler = autoscaler
        self.stream = stream
        self.cloud = cloud
        self.settings = settings
        self.n = len(stream)
        self.start_s = 0.0
        self.batches = np.unique(stream.batch_size)
        self.fleet = _Fleet()
        self.traffic = _Traffic(stream, settings, self.start_s)
        self.actions: list[ScaleAction] = []
        self.boots: list[tuple[float, int]] = []
        self.start = np.full(self.n, np.nan)
        self.finish = np.full(self.n, np.nan)
        self.where = np.full(self.n, -1, dtype=np.int64)
        self.end_s = self.start_s
        pool = self._checked(autoscaler.decide(self.traffic.first()), None)
        if pool is None or pool.size == 0:
            raise ConfigError(
                f"autoscaler {autoscaler.name!r} chose no initial pool.",
                "an autoscaler's first decision (t=0) must be a pool with an instance.",
            )
        self.driver = Driver(
            scenario, pool.instance_types(), policy, seed=seed, policy_options=policy_options
        )
        self.driver.ctx.prime(self.batches)
        for j, t in enumerate(pool.instance_types()):
            self.fleet.request(j, t, self.start_s, booted=True)
        # Per chunk: its queries, their arrival times, u and batches, the service-time lists
        # of the types asked so far, and how many of its queries have started.
        self.chunks: dict[int, tuple[np.ndarray, np.ndarray, dict[str, list[float]]]] = {}
        self.started: dict[int, int] = {}

    # --- the event loop -------------------------------------------------------------------

    def run(self, progress: Callable[[int], None] | None) -> None:
        driver, fleet, n = self.driver, self.fleet, self.n
        shift = self.settings.chunk_queries.bit_length() - 1
        mask = self.settings.chunk_queries - 1
        start, finish, where = self.start, self.finish, self.where
        heap: list[tuple[float, int]] = []
        boots = self.boots
        push, pop = heapq.heappush, heapq.heappop
        service = self._service_s
        draining = fleet.draining
        tick_s = self.settings.tick_s
        next_tick = self.start_s + tick_s
        last_arrival = float(self.stream.arrival_s[-1])
        deadline = last_arrival + self.settings.drain_limit_s
        queries: list[Query] = []
        times: list[float] = []
        i = 0
        t_arrive = float(self.stream.arrival_s[0])
        now = self.start_s
        while True:
            if i >= n and not heap and self._finished(now, next_tick, deadline):
                break
            t_done = heap[0][0] if heap else INF
            t_boot = boots[0][0] if boots else INF
            if t_done <= t_boot and t_done <= next_tick and t_done <= t_arrive:
                now, j = pop(heap)
                q, starts = driver.complete(j, now)
                finish[q.qid] = now
                if j in draining:
                    fleet.release(j, now, self.price(j))
            elif t_boot <= next_tick and t_boot <= t_arrive:
                now, j = pop(boots)
                if not fleet.booted(j, now):
                    continue
                starts = driver.up(j, now)
            elif next_tick <= t_arrive:
                now = next_tick
                next_tick += tick_s
                self._tick(now, i)
                continue
            else:
                now = t_arrive
                k = i & mask
                if k == 0:
                    queries, times = self._load_chunk(i >> shift)
                    if progress is not None:
                        progress(len(queries))
                starts = driver.arrive(queries[k], now)
                i += 1
                t_arrive = times[k + 1] if k + 1 < len(times) else self._next_arrival(i)
            for qid, j in starts:
                start[qid] = now
                where[qid] = j
                push(heap, (now + service(qid, j, shift, mask), j))

    def _finished(self, now: float, next_tick: float, deadline: float) -> bool:
        """Nothing is left to arrive or complete: is the run over? It is when no query waits
        (``now`` was the last completion), or when queries wait for a pool that neither
        serves nor boots and the next tick is past the drain limit (they are misses)."""
        state = self.driver.state
        if not state.queue:
            self.end_s = now
            return True
        if self.boots:
            return False
        if state.idle:
            raise PolicyError(
                f"policy {self.driver.policy.name!r} left {len(state.queue)} queries queued "
                "with every instance idle and no event pending.",
                "a policy must eventually start every queued query.",
            )
        if next_tick > deadline:
            self.end_s = deadline
            return True
        return False

    def _next_arrival(self, i: int) -> float:
        return float(self.stream.arrival_s[i]) if i < self.n else INF

    def _load_chunk(self, c: int) -> tuple[list[Query], list[float]]:
        """Queries of chunk ``c`` and their arrival times; draws their ``u`` (in trace order,
        as the plain simulator draws them for the whole trace at once)."""
        size = self.settings.chunk_queries
        lo, hi = c * size, min((c + 1) * size, self.n)
        times = self.stream.arrival_s[lo:hi].tolist()
        batch = self.stream.batch_size[lo:hi]
        u = self.driver.service_rng.random(hi - lo)
        self.chunks[c] = (u, batch, {})
        self.started[c] = 0
        batches = batch.tolist()
        queries = [Query(lo + k, times[k], batches[k]) for k in range(hi - lo)]
        return queries, times

    def _service_s(self, qid: int, j: int, shift: int, mask: int) -> float:
        """Service time (s) of query ``qid`` on instance ``j``; drops a chunk once all its
        queries have started."""
        c = qid >> shift
        u, batch, tables = self.chunks[c]
        t = self.fleet.types[j]
        table = tables.get(t)
        if table is None:
            profile = self.scenario.profiles.get(t)
            table = tables[t] = (profile.service_ms(batch, u) / 1000.0).tolist()
        started = self.started[c] + 1
        if started == len(u):
            del self.chunks[c], self.started[c]
        else:
            self.started[c] = started
        return table[qid & mask]

    def price(self, j: int) -> float:
        return self.scenario.prices.price_per_hr(self.fleet.types[j])

    # --- control ticks ----------------------------------------------------------------------

    def _tick(self, now: float, arrived: int) -> None:
        obs = self._observe(now, arrived)
        target = self._checked(self.autoscaler.decide(obs), obs.pool.rented)
        if target is not None:
            self._move(now, target)

    def _observe(self, now: float, arrived: int) -> Observation:
        fleet, s = self.fleet, self.settings
        state = self.driver.state
        pool = PoolState(
            fleet.counts(fleet.serving), fleet.counts(fleet.booting), len(fleet.draining)
        )
        running = sum(1 for q in state.running if q is not None)
        short = self.traffic.window(now, arrived, s.short_window_s)
        long = self.traffic.window(now, arrived, s.long_window_s)
        return Observation(now, pool, len(state.queue), running, short, long)

    def _checked(self, pool: Pool | None, current: Pool | None) -> Pool | None:
        """The autoscaler's answer as a move to make, or None when it keeps the pool."""
        if pool is None or pool == current:
            return None
        if not isinstance(pool, Pool):
            raise PolicyError(
                f"autoscaler {self.autoscaler.name!r} returned {type(pool).__name__}, not a Pool.",
                "decide() must return a kairos.catalog.Pool or None.",
            )
        return self.scenario.check_pool(pool)

    def _move(self, now: float, target: Pool) -> None:
        """Rent and release instances so that serving plus booting is ``target``."""
        fleet, driver = self.fleet, self.driver
        before = fleet.rented()
        if before.as_dict() == target.as_dict():
            return
        want = target.as_dict()
        add: list[str] = []
        retire: list[int] = []
        for t in dict.fromkeys([*before.types, *target.types]):
            booting = sorted(fleet.booting.get(t, ()), reverse=True)
            serving = fleet.serving.get(t, set())
            extra = len(booting) + len(serving) - want.get(t, 0)
            if extra < 0:
                add += [t] * -extra
                continue
            # Cancel the newest boots first, then idle instances, then busy ones (newest first).
            idle = driver.state.idle
            by_pref = booting + sorted(serving, key=lambda j: (j not in idle, -j))
            retire += by_pref[:extra]
        if retire:
            free = set(driver.retire(retire, now))
            for j in retire:
                if j in free:
                    fleet.release(j, now, self.price(j))
                else:
                    fleet.serving[fleet.types[j]].discard(j)
                    fleet.draining.add(j)
        if add:
            ids = driver.add_instances(add, now)
            driver.ctx.prime(self.batches)
            for j, t in zip(ids, add, strict=True):
                fleet.request(j, t, now, booted=False)
                heapq.heappush(self.boots, (now + self.cloud.boot_delay_s(t), j))
        self.actions.append(ScaleAction(now, before, fleet.rented()))

    # --- the result -------------------------------------------------------------------------


def _result(replay: _Replay) -> TimelineResult:
    """What a finished replay measured; instances still rented are released at its end."""
    end = replay.end_s
    fleet = replay.fleet
    released = {r.instance for r in fleet.rentals}
    for j in sorted(fleet.types):
        if j not in released:
            fleet.release(j, end, replay.price(j))
    rentals = tuple(sorted(fleet.rentals, key=lambda r: r.instance))
    records = QueryRecords(
        arrival_s=replay.stream.arrival_s,
        start_s=replay.start,
        finish_s=replay.finish,
        instance=replay.where,
        batch_size=replay.stream.batch_size,
        instance_type=replay.driver.state.instance_type,
    )
    met = records.latency_ms <= replay.scenario.qos_ms  # NaN (unanswered) is a miss
    return TimelineResult(
        autoscaler=replay.autoscaler.name,
        policy=replay.driver.policy.name,
        qos_ms=replay.scenario.qos_ms,
        cost_dollars=sum(r.cost_dollars(replay.cloud) for r in rentals),
        qos_share=float(np.mean(met)),
        queries=replay.n,
        unanswered=int(np.count_nonzero(np.isnan(replay.finish))),
        start_s=replay.start_s,
        end_s=end,
        actions=tuple(replay.actions),
        rentals=rentals,
        minutes=minute_series(records, met, rentals, replay.start_s),
        records=records,
    )


def _step_average(
    edges: np.ndarray, starts: np.ndarray, ends: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Mean over each [edges[k], edges[k+1]) of the sum of ``weights`` of intervals alive."""
    if len(starts) == 0:
        return np.zeros(len(edges) - 1)
    times = np.concatenate([starts, ends])
    deltas = np.concatenate([weights, -weights])
    order = np.argsort(times, kind="stable")
    times, level = times[order], np.cumsum(deltas[order])
    # The integral of the step function at each breakpoint, then linear in between.
    area = np.concatenate([[0.0], np.cumsum(level[:-1] * np.diff(times))])
    at_edges = np.interp(edges, times, area, left=0.0, right=area[-1])
    return np.diff(at_edges) / np.diff(edges)


def minute_series(
    records: QueryRecords, met: np.ndarray, rentals: tuple[Rental, ...], start_s: float
) -> MinuteSeries:
    """Per-minute rate, QoS share, p99, rented pool and cost rate (see ``MinuteSeries``)."""
    minute = ((records.arrival_s - start_s) // 60.0).astype(np.int64)
    n_min = int(minute[-1]) + 1
    edges = start_s + 60.0 * np.arange(n_min + 1)
    bounds = np.searchsorted(minute, np.arange(n_min + 1), side="left")
    latency = np.where(np.isnan(records.finish_s), INF, records.latency_ms)
    counts = np.diff(bounds)
    share = np.ones(n_min)
    p99 = np.full(n_min, np.nan)
    for m in np.flatnonzero(counts):
        lo, hi = bounds[m], bounds[m + 1]
        share[m] = float(np.mean(met[lo:hi]))
        ordered = np.sort(latency[lo:hi])
        p99[m] = ordered[max(math.ceil(0.99 * (hi - lo)) - 1, 0)]
    starts = np.array([r.requested_s for r in rentals])
    ends = np.array([r.released_s for r in rentals])
    prices = np.array([r.price_per_hr for r in rentals])
    pool = {}
    for t in dict.fromkeys(r.instance_type for r in rentals):
        of_type = np.array([r.instance_type == t for r in rentals])
        pool[t] = _step_average(edges, starts[of_type], ends[of_type], np.ones(of_type.sum()))
    return MinuteSeries(
        start_s=edges[:-1],
        rate_qps=counts / 60.0,
        qos_share=share,
        p99_ms=p99,
        cost_per_hr=_step_average(edges, starts, ends, prices),
        pool=pool,
    )


def percent_down(share: float, decimals: int = 1) -> str:
    """``share`` (0-1) as a percentage truncated, never rounded up: 0.99995 is ``99.9%``, so a
    share below 100% never prints as 100%."""
    scale = 10**decimals
    value = math.floor(share * 100 * scale + 1e-9) / scale
    return f"{value:.{decimals}f}%"
