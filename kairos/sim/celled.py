"""A celled service in simulation: a front splitter in front of N cells, each a central queue.

A cell is a pool with its own router: here, its own ``Driver`` (its own central queue, cluster
state and policy instance). The front splitter stands for the load balancer in front of the
routers: it sees only how many queries each cell has outstanding (queued or in service) and
each cell's capacity weight (``kairos.sim.cells.cell_weights``), never the cells' queues or
instances, as a real L4/L7 balancer does. It picks a cell at each arrival; the cell's driver
takes it from there exactly as ``kairos.sim.engine`` does for one pool.

One event loop serves every cell: arrivals (pre-generated) and completions of all cells
(one heap, keyed by time and service-wide instance id) are merged in time order, completions
first on ties, as in ``kairos.sim.engine``. A query's service time on every type is drawn from
one uniform per query, from the service-time stream of the run's seed, before any routing:
the same query is equally lucky whichever cell and instance it lands on, and a split never
changes which random numbers later queries get. Cell ``k``'s policy gets the policy stream
of seed ``seed + k``, and the splitter its own stream of ``seed``, so a run is a pure function
of its seed, and a service of one cell is the central queue: the same decisions, times and
records as ``kairos.sim.engine.simulate`` on the same pool and seed.
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, ClassVar

import numpy as np

from kairos.catalog import Pool
from kairos.distributor.driver import Driver, PolicyFactory
from kairos.errors import ConfigError, PolicyError
from kairos.registry import Registry
from kairos.scenario import Scenario
from kairos.sim.capacity import (
    DEFAULT_MEASUREMENT,
    CapacityResult,
    Measurement,
    Simulator,
    measure,
)
from kairos.sim.cells import cell_weights, instance_rates_qps, integer_weights, split_pool
from kairos.sim.engine import SimResult, service_times_s, sim_result
from kairos.workload import QueryStream


@dataclass(frozen=True)
class CellSettings:
    """How a celled service is simulated; the CLI and the benchmarks read their defaults here.

    ``splitter``: the front balancer's policy (``SPLITTERS``). Least-outstanding is the
    default because it is what a balancer in front of queueing routers should run (HAProxy's
    ``leastconn``): it sees a cell falling behind and sends elsewhere, where weighted random
    only knows the planned capacities. ``haproxy-leastconn`` is HAProxy's own rule, pick for
    pick (bench_cells.py compares the live cells against it).
    """

    splitter: str = "least-outstanding"


DEFAULT_CELLS = CellSettings()


class Splitter(ABC):
    """Picks the cell of each arriving query from the cells' outstanding counts alone."""

    name: ClassVar[str] = ""

    def __init__(self, weights: Sequence[float], rng: np.random.Generator) -> None:
        self.weights = tuple(float(w) for w in weights)
        self.rng = rng

    @abstractmethod
    def pick(self, outstanding: Sequence[int]) -> int:
        """Index of the cell that takes the next query."""

    def release(self, cell: int) -> None:
        """Cell ``cell`` answered one of its queries (a splitter that keeps its own order of
        the cells hears it here; the others see the counts ``pick`` gets)."""
        del cell  # the counts ``pick`` gets are all the default splitters need


SPLITTERS: Registry[type[Splitter]] = Registry(
    "cell splitter", "pass --splitter with one of the known names."
)


@SPLITTERS.register("weighted")
class WeightedRandom(Splitter):
    """Each query to cell ``k`` with probability ``weight[k]`` (a balancer's weighted random)."""

    name = "weighted"

    def __init__(self, weights: Sequence[float], rng: np.random.Generator) -> None:
        super().__init__(weights, rng)
        cum = list(accumulate(self.weights))
        self._cum = [c / cum[-1] for c in cum]

    def pick(self, outstanding: Sequence[int]) -> int:
        if len(self._cum) == 1:
            return 0
        k = bisect_right(self._cum, float(self.rng.random()))
        return min(k, len(self._cum) - 1)  # a draw of exactly the last bound (rounding)


@SPLITTERS.register("least-outstanding")
class LeastOutstanding(Splitter):
    """To the cell whose outstanding queries per unit of capacity would be fewest with this
    one added (HAProxy's weighted ``leastconn``); counting the new query keeps a small cell
    from taking every arrival while all are idle. Ties go round-robin from the cell after
    the last pick, as HAProxy does: lowest-index ties would load cell 0 more than the
    others (it cost 1% of allowable throughput on 8 equal dien cells, docs/cells.md)."""

    name = "least-outstanding"

    def __init__(self, weights: Sequence[float], rng: np.random.Generator) -> None:
        super().__init__(weights, rng)
        self._next = 0

    def pick(self, outstanding: Sequence[int]) -> int:
        w, n = self.weights, len(self.weights)
        load = [(outstanding[k] + 1) / w[k] for k in range(n)]
        best = min(load)
        k = next(c % n for c in range(self._next, self._next + n) if load[c % n] == best)
        self._next = (k + 1) % n
        return k


@SPLITTERS.register("haproxy-leastconn")
class HaproxyLeastConn(Splitter):
    """HAProxy's ``balance leastconn`` as HAProxy 2.6 computes it (``lb_fwlc.c``), the
    balancer ``kairos serve --cells`` runs: the live splitter, modelled pick for pick.

    It differs from ``least-outstanding`` in three ways. The weights are HAProxy's integers
    (``integer_weights``, as the cell set writes them). A cell with no query open has key 0,
    whatever its weight, so idle cells tie. Otherwise the key is ``(open + 1) * 4096 //
    (16 * weight)`` in whole numbers, so near counts tie too. Ties go to the cell whose key
    changed longest ago: HAProxy keeps the cells in a tree by key, re-inserts a cell behind
    its equals each time it takes or answers a query, and picks the first.
    """

    name = "haproxy-leastconn"
    EWEIGHT_MAX = 4096  # SRV_EWGHT_MAX: the largest weight (256) x BE_WEIGHT_SCALE (16)
    WEIGHT_SCALE = 16  # BE_WEIGHT_SCALE: a server's effective weight is its weight x 16

    def __init__(self, weights: Sequence[float], rng: np.random.Generator) -> None:
        super().__init__(weights, rng)
        self._weight = integer_weights(self.weights)
        n = len(self._weight)
        # The open counts are the caller's (``pick``'s argument); what HAProxy's tree adds is
        # the order among equal keys: when each cell was last (re)inserted, config order first.
        self._placed = list(range(n))
        self._clock = n

    def _key(self, cell: int, n_open: int) -> int:
        if n_open == 0:
            return 0
        return (n_open + 1) * self.EWEIGHT_MAX // (self.WEIGHT_SCALE * self._weight[cell])

    def _moved(self, cell: int) -> None:
        self._placed[cell] = self._clock
        self._clock += 1

    def pick(self, outstanding: Sequence[int]) -> int:
        k = min(
            range(len(self._weight)),
            key=lambda c: (self._key(c, outstanding[c]), self._placed[c]),
        )
        self._moved(k)
        return k

    def release(self, cell: int) -> None:
        self._moved(cell)


def make_splitter(name: str, weights: Sequence[float], seed: int) -> Splitter:
    """The splitter ``name`` with its own random stream of ``seed`` (independent of the
    service-time and policy streams ``seed_streams`` derives from the same seed)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])
    return SPLITTERS.get(name)(weights, rng)


def cut(scenario: Scenario, pool: Pool, cells: int) -> tuple[Pool, ...]:
    """``pool`` split into ``cells`` cells (``split_pool``), each a ``Pool``."""
    rates = instance_rates_qps(scenario, pool.types)
    return tuple(Pool.of(c) for c in split_pool(dict(pool.counts), cells, rates))


def weights_of(scenario: Scenario, cells: Sequence[Pool]) -> tuple[float, ...]:
    types = {t for c in cells for t in c.types}
    rates = instance_rates_qps(scenario, sorted(types))
    return cell_weights((dict(c.counts) for c in cells), rates)


def merged(cells: Sequence[Pool]) -> Pool:
    """The pool of every instance of ``cells``."""
    return Pool.of([pair for c in cells for pair in c.counts])


@dataclass(frozen=True, eq=False)
class CelledResult:
    """A celled run: the service-wide result (instance ids numbered cell after cell, in cell
    order) and the cell of each query."""

    result: SimResult
    cells: tuple[Pool, ...]
    splitter: str
    cell_of_query: np.ndarray


def simulate_cells(
    scenario: Scenario,
    cells: Sequence[Pool],
    policy: str | PolicyFactory,
    stream: QueryStream,
    *,
    seed: int = 0,
    policy_options: Mapping[str, Any] | None = None,
    splitter: str = DEFAULT_CELLS.splitter,
) -> CelledResult:
    """Run ``stream`` through the cells behind the front ``splitter`` until all finished."""
    cells = tuple(cells)
    if not cells:
        raise ConfigError("a celled service needs at least one cell.", "pass --cells >= 1.")
    for cell in cells:
        for t in cell.types:
            scenario.profiles.get(t)
    SPLITTERS.check(splitter)
    drivers = [
        Driver(scenario, c.instance_types(), policy, seed=seed + k, policy_options=policy_options)
        for k, c in enumerate(cells)
    ]
    for d in drivers:
        d.ctx.prime(stream.batch_size)
    instance_type = tuple(t for c in cells for t in c.instance_types())
    type_names = tuple(dict.fromkeys(instance_type))
    # Cell 0's service stream is the stream of ``seed``: one cell draws as the engine does.
    service = service_times_s(scenario, type_names, stream, drivers[0].service_rng)
    front = make_splitter(splitter, weights_of(scenario, cells), seed)
    start_s, finish_s, where, cell_of = _run(drivers, front, stream, service, type_names)
    name = drivers[0].policy.name
    res = sim_result(
        scenario, merged(cells), name, stream, (start_s, finish_s, where), instance_type
    )
    return CelledResult(res, cells, splitter, np.array(cell_of, dtype=np.int64))


def _run(
    drivers: list[Driver],
    front: Splitter,
    stream: QueryStream,
    service: list[list[float]],
    type_names: tuple[str, ...],
) -> tuple[list[float], list[float], list[int], list[int]]:
    """Merge arrivals and every cell's completions in time order (completions first on ties).

    Heap entries are ``(time, service-wide instance id)``: with one cell, exactly the engine's.
    """
    n = len(stream)
    queries = stream.queries()
    arrivals = stream.arrival_s.tolist()
    start_s = [0.0] * n
    finish_s = [0.0] * n
    where = [-1] * n
    cell_of = [-1] * n
    offset = list(accumulate([0] + [d.state.n_instances for d in drivers[:-1]]))
    cell_at: list[int] = []
    for k, d in enumerate(drivers):
        cell_at += [k] * d.state.n_instances
    # Each cell's type index -> the service table's row.
    rows = [[type_names.index(t) for t in d.state.type_names] for d in drivers]
    outstanding = [0] * len(drivers)
    heap: list[tuple[float, int]] = []
    push, pop = heapq.heappush, heapq.heappop
    i = 0
    while i < n or heap:
        if heap and (i >= n or heap[0][0] <= arrivals[i]):
            now, g = pop(heap)
            k = cell_at[g]
            q, starts = drivers[k].complete(g - offset[k], now)
            finish_s[q.qid] = now
            outstanding[k] -= 1
            front.release(k)
        else:
            now = arrivals[i]
            k = front.pick(outstanding)
            outstanding[k] += 1
            cell_of[i] = k
            starts = drivers[k].arrive(queries[i], now)
            i += 1
        d, base, row = drivers[k], offset[k], rows[k]
        type_idx = d.state.type_idx
        for qid, j in starts:
            start_s[qid] = now
            where[qid] = base + j
            push(heap, (now + service[row[type_idx[j]]][qid], base + j))
        if not heap and i >= n:
            for d in drivers:
                if d.state.queue:
                    raise PolicyError(
                        f"policy {d.policy.name!r} left {len(d.state.queue)} queries queued "
                        "with every instance idle and no event pending.",
                        "a policy must eventually start every queued query.",
                    )
    return start_s, finish_s, where, cell_of


def celled_simulator(cells: Sequence[Pool], splitter: str = DEFAULT_CELLS.splitter) -> Simulator:
    """A drop-in for ``kairos.sim.engine.simulate`` that runs ``cells`` instead of the pool it
    is given (the capacity search's ``simulator`` hook): the search then measures the celled
    service with the same trials, streams and verdicts as the central queue."""
    fixed = tuple(cells)

    def run(
        scenario: Scenario,
        pool: Pool,
        policy: str | PolicyFactory,
        stream: QueryStream,
        *,
        seed: int = 0,
        policy_options: Mapping[str, Any] | None = None,
    ) -> SimResult:
        del pool  # the cells are the pool
        return simulate_cells(
            scenario,
            fixed,
            policy,
            stream,
            seed=seed,
            policy_options=policy_options,
            splitter=splitter,
        ).result

    return run


def measure_cells(
    scenario: Scenario,
    pool: Pool,
    cells: int,
    policy: str = "fcfs",
    measurement: Measurement = DEFAULT_MEASUREMENT,
    *,
    splitter: str = DEFAULT_CELLS.splitter,
    policy_options: Mapping[str, Any] | None = None,
    guess_qps: float | None = None,
) -> CapacityResult:
    """Allowable throughput of ``pool`` cut into ``cells`` cells behind ``splitter``: the
    same search, trials and seeded streams as ``kairos.sim.capacity.measure`` on the pool, so
    the two figures differ only by the cut. One cell is the central queue's search."""
    parts = cut(scenario, pool, cells)
    return measure(
        scenario,
        pool,
        policy,
        measurement,
        policy_options=policy_options,
        guess_qps=guess_qps,
        simulator=celled_simulator(parts, splitter),
    )
