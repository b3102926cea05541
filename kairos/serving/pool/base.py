"""Worker pools: where the instances of a pool run and how the router reaches them.

A ``WorkerPool`` starts (or finds) one worker per instance, keeps a link to each, sends it
queries, notices when it fails, brings it back, and adds or removes instances on demand. It
reports to one ``PoolListener`` (the router's dispatcher): ``instance_up(j)`` when instance
``j`` can take a query, ``instance_down(j, reason, blame)`` when it failed. Calls go one way:
the dispatcher calls the pool, the pool calls the listener back; the pool never decides what
runs where.

Implementations share ``LinkedPool`` (links, dispatch with a timeout, failure and recovery
with backoff) and differ in where a worker's address comes from:

* ``LocalPool`` starts worker processes on this machine (``LocalSupervisor``) and restarts
  a failed one;
* ``RemotePool`` is given the addresses (``--workers HOST:PORT,...``) and reconnects;
* ``RayPool`` (serving/ray/pool.py) runs each instance as a Ray actor on a node of its type.

Every backend registers in ``POOL_BACKENDS``, a factory from a ``PoolRequest`` (the Ray pool by
its dotted path, so it is imported only when picked).

``blame`` says whether the query the failed instance was serving may have caused the
failure: a timeout on that query, or the death of a process that served only that query.
A process co-hosting several replay instances dies for reasons no query can cause (replay
workers never read the tensors), so its queries are not blamed; neither is a query that a
dead link refused before any worker read it.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from kairos.errors import RuntimeServiceError
from kairos.protocol.tensors import TensorSpec, parse_specs
from kairos.registry import Registry
from kairos.serving.pool.supervisor import LocalSupervisor
from kairos.serving.pool.transport import Link, WorkerLost, make_link
from kairos.serving.settings import PoolRequest
from kairos.serving.worker.launch import WorkerSpec

OnReply = Callable[[bytes], None]
MAX_BACKOFF_S = 5.0


class PoolListener(Protocol):
    def instance_up(self, j: int) -> None: ...

    def instance_down(self, j: int, reason: str, blame: bool) -> None: ...

    def log(self, message: str) -> None: ...


class Slot:
    """The pool's record of one instance: its address, link and health."""

    __slots__ = ("spec", "address", "epoch", "healthy", "removed", "replay", "pid", "node", "link")

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.address = ""
        self.epoch = 0  # bumped on every failure: replies from an older epoch are ignored
        self.healthy = False
        self.removed = False
        self.replay = False
        self.pid: int | None = None
        self.node = ""
        self.link: Link | None = None


class WorkerPool(ABC):
    """The seam between the router and wherever its workers run."""

    signature: tuple[TensorSpec, ...] | None
    out_signature: tuple[TensorSpec, ...] | None
    described: bool

    @abstractmethod
    async def start(self, listener: PoolListener, specs: list[WorkerSpec]) -> None:
        """Start or connect a worker per spec (instance ``j`` = ``specs[j]``)."""

    @abstractmethod
    def dispatch(self, j: int, message: bytes, timeout_s: float, on_reply: OnReply) -> None:
        """Send ``message`` to instance ``j``; ``on_reply`` gets its reply. A failure or a
        timeout is reported as ``instance_down`` instead (never raised here)."""

    @abstractmethod
    def fail(self, j: int, reason: str, blame: bool) -> None:
        """The caller found instance ``j`` broken (a reply it cannot read)."""

    @abstractmethod
    async def add(self, specs: list[WorkerSpec]) -> list[int]:
        """Start workers for new instances; ids continue after the existing ones."""

    @abstractmethod
    async def remove(self, instances: list[int]) -> None:
        """Stop the workers of ``instances`` (the caller drained them first)."""

    @abstractmethod
    def replay(self, j: int) -> bool:
        """True when instance ``j`` only replays its profile (it does not read tensors)."""

    def pipelines(self, j: int) -> bool:
        """True when instance ``j`` may be sent a query before its previous one is answered
        (the worker keeps it waiting and answers in order). None may, unless a pool says so."""
        return False

    @abstractmethod
    def healthy_instances(self) -> list[int]:
        """Instances whose worker is connected and answering."""

    @abstractmethod
    def describe(self) -> list[dict[str, Any]]:
        """One entry per instance: type, address, state, process, node."""

    @abstractmethod
    async def close(self) -> None:
        """Stop everything the pool started."""


class LinkedPool(WorkerPool):
    """Links, dispatch, failure and recovery; subclasses say where workers are."""

    def __init__(self, connect_timeout_s: float) -> None:
        self.slots: list[Slot] = []
        self.signature = None
        self.out_signature = None
        self.described = False
        self._connect_timeout_s = connect_timeout_s
        self._listener: PoolListener | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    # --- where workers are (subclasses) -------------------------------------------------------

    @abstractmethod
    async def _launch(self, first: int, specs: list[WorkerSpec]) -> Sequence[str | None]:
        """Start workers for ``specs`` (ids from ``first``); return their addresses (None for
        one that has none yet, e.g. a Ray actor waiting for a node: recovery waits for it)."""

    @abstractmethod
    async def _relaunch(self, j: int, stale_pid: int | None) -> tuple[str, int | None]:
        """Bring instance ``j``'s worker back (restart it or find it); return its address and
        the process now serving it (None where unknown). ``stale_pid`` is the process found
        failing: one that still runs is restarted."""

    async def _retire(self, instances: list[int]) -> None:  # noqa: B027
        """Stop the workers of removed instances (nothing to do for remote ones)."""

    async def _shutdown(self) -> None:  # noqa: B027
        """Stop every worker this pool started."""

    def _blame_exit(self, j: int) -> bool:
        """Whether a process exit while ``j`` served a query may be that query's doing."""
        return True

    # --- the interface ------------------------------------------------------------------------

    async def start(self, listener: PoolListener, specs: list[WorkerSpec]) -> None:
        self._listener = listener
        await self.add(specs)

    async def add(self, specs: list[WorkerSpec]) -> list[int]:
        first = len(self.slots)
        new = [Slot(spec) for spec in specs]
        self.slots += new
        ids = list(range(first, first + len(new)))
        addresses = await self._launch(first, specs)
        placed = []
        for j, address in zip(ids, addresses, strict=True):
            if address is None:
                self._spawn(self._recover(j, None))
            else:
                self.slots[j].address = address
                placed.append(j)
        results = await asyncio.gather(*(self._open(j) for j in placed), return_exceptions=True)
        for j, res in zip(placed, results, strict=True):
            if isinstance(res, RuntimeServiceError):
                raise res  # a worker that serves something else: no retry fixes that
            if isinstance(res, BaseException):
                self._log(f"worker {j} at {self.slots[j].address} unreachable ({res!r:.200})")
                self._spawn(self._recover(j, None))
            else:
                self._bring_up(j)
        return ids

    async def remove(self, instances: list[int]) -> None:
        for j in instances:
            slot = self.slots[j]
            slot.removed = True
            slot.healthy = False
            slot.epoch += 1
        await self._retire(instances)
        await asyncio.gather(*(self._close_link(j) for j in instances), return_exceptions=True)

    def replay(self, j: int) -> bool:
        return self.slots[j].replay

    def pipelines(self, j: int) -> bool:
        # A replay worker's lock would keep the order too, but only a model worker gains: it
        # decodes the waiting query while the model runs (serving/worker/lane.py).
        slot = self.slots[j]
        return not slot.replay and slot.link is not None and slot.link.pipelines

    def dispatch(self, j: int, message: bytes, timeout_s: float, on_reply: OnReply) -> None:
        slot = self.slots[j]
        epoch = slot.epoch
        link = slot.link
        loop = asyncio.get_running_loop()
        if link is None:
            loop.call_soon(self._failed, j, epoch, "not connected", False)
            return
        timer = loop.call_later(timeout_s, self._failed, j, epoch, "timed out", True)

        def reply(result: bytes | BaseException) -> None:
            timer.cancel()
            if slot.epoch != epoch:
                return
            if isinstance(result, BaseException):
                self._failed(j, epoch, f"failed ({result!r:.200})", self._blame_exit(j))
            else:
                on_reply(result)

        try:
            link.start_call(message, reply)
        except WorkerLost as exc:
            timer.cancel()
            # Not inline: the caller is iterating over the policy's decisions.
            loop.call_soon(self._failed, j, epoch, f"refused the query ({exc})", False)

    def fail(self, j: int, reason: str, blame: bool) -> None:
        self._failed(j, self.slots[j].epoch, reason, blame)

    def healthy_instances(self) -> list[int]:
        return [j for j, s in enumerate(self.slots) if s.healthy]

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "instance": j,
                "instance_type": s.spec.instance_type,
                "address": s.address,
                "state": "removed" if s.removed else "up" if s.healthy else "down",
                "up": s.healthy,
                "pid": s.pid,
                "node": s.node,
            }
            for j, s in enumerate(self.slots)
        ]

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(
            *(self._close_link(j) for j in range(len(self.slots))), return_exceptions=True
        )
        await self._shutdown()

    # --- failure and recovery -----------------------------------------------------------------

    def on_process_exit(self, j: int) -> None:
        """The process hosting instance ``j`` ended (reported by whoever watches it)."""
        self._failed(j, self.slots[j].epoch, "its process exited", self._blame_exit(j))

    def _failed(self, j: int, epoch: int, reason: str, blame: bool) -> None:
        slot = self.slots[j]
        if self._closing or slot.epoch != epoch or not slot.healthy or slot.removed:
            return
        slot.healthy = False
        slot.epoch += 1
        self._log(f"worker {j} ({slot.spec.instance_type} at {slot.address}) marked down: {reason}")
        self._spawn(self._recover(j, slot.pid))
        if self._listener is not None:
            self._listener.instance_down(j, reason, blame)

    async def _recover(self, j: int, stale_pid: int | None) -> None:
        slot = self.slots[j]
        await self._close_link(j)
        backoff_s = 0.1
        while not self._closing and not slot.removed:
            try:
                # If the process just (re)launched does not come up either, the next try must
                # restart it, not keep reconnecting to it: it becomes the stale one.
                slot.address, stale_pid = await self._relaunch(j, stale_pid)
                await self._open(j)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._close_link(j)
                self._log(f"worker {j} at {slot.address} not back yet ({exc!r:.200})")
                await asyncio.sleep(backoff_s)
                backoff_s = min(2 * backoff_s, MAX_BACKOFF_S)
        else:
            return
        self._bring_up(j)
        self._log(f"worker {j} ({slot.spec.instance_type} at {slot.address}) is back up")

    async def _open(self, j: int) -> None:
        slot = self.slots[j]
        link = make_link(slot.spec.transport, slot.address)
        try:
            description = await link.open(self._connect_timeout_s)
            self._check(j, description)
        except BaseException:
            await link.close()
            raise
        slot.link = link

    def _check(self, j: int, description: dict[str, Any]) -> None:
        slot = self.slots[j]
        slot.replay = description.get("mode") == "replay"
        slot.pid = description.get("pid")
        slot.node = str(description.get("node", slot.node))
        got = (description.get("model"), description.get("instance_type"))
        want = (slot.spec.model, slot.spec.instance_type)
        if got != want:
            raise RuntimeServiceError(
                f"worker at {slot.address} serves model {got[0]!r} on {got[1]!r}, but pool "
                f"slot {j} expects {want[0]!r} on {want[1]!r}.",
                "list --workers in pool order (types grouped as in --pool), one per instance.",
            )
        if not self.described:
            self.signature = parse_specs(description.get("inputs"))
            self.out_signature = parse_specs(description.get("outputs"))
            self.described = True

    def _bring_up(self, j: int) -> None:
        slot = self.slots[j]
        if slot.removed or self._closing:
            return
        slot.healthy = True
        if self._listener is not None:
            self._listener.instance_up(j)

    async def _close_link(self, j: int) -> None:
        slot = self.slots[j]
        link, slot.link = slot.link, None
        if link is not None:
            await link.close()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _log(self, message: str) -> None:
        if self._listener is not None:
            self._listener.log(message)


class LocalPool(LinkedPool):
    """Workers are child processes of the router, started and restarted here."""

    def __init__(self, connect_timeout_s: float, hosting: str) -> None:
        super().__init__(connect_timeout_s)
        self.supervisor = LocalSupervisor(self.on_process_exit, hosting)

    def _blame_exit(self, j: int) -> bool:
        return self.supervisor.group_size(j) == 1

    async def _launch(self, first: int, specs: list[WorkerSpec]) -> list[str]:
        return await self.supervisor.add(list(specs))

    async def _relaunch(self, j: int, stale_pid: int | None) -> tuple[str, int | None]:
        address = await self.supervisor.restart(j, stale_pid)
        return address, self.supervisor.pid(j)

    async def _retire(self, instances: list[int]) -> None:
        await self.supervisor.stop(instances)

    async def _shutdown(self) -> None:
        await self.supervisor.stop_all()


class RemotePool(LinkedPool):
    """Workers were started elsewhere (``kairos worker``); their addresses are given."""

    def __init__(self, connect_timeout_s: float, addresses: tuple[str, ...]) -> None:
        super().__init__(connect_timeout_s)
        self._addresses = list(addresses)

    async def _launch(self, first: int, specs: list[WorkerSpec]) -> list[str]:
        end = first + len(specs)
        if end > len(self._addresses):
            raise RuntimeServiceError(
                f"{len(self._addresses)} worker addresses for {end} instances.",
                "give one HOST:PORT per instance with --workers (a remote pool cannot grow "
                "by itself: start the workers, then restart the router with their addresses).",
            )
        return self._addresses[first:end]

    async def _relaunch(self, j: int, stale_pid: int | None) -> tuple[str, int | None]:
        return self.slots[j].address, None  # not ours to restart: reconnect


PoolFactory = Callable[[PoolRequest], WorkerPool]

POOL_BACKENDS: Registry[PoolFactory] = Registry(
    "pool backend", "pass --backend local (the default) or another registered backend."
)


def _local_backend(request: PoolRequest) -> WorkerPool:
    settings = request.settings
    if settings.addresses is not None:
        return RemotePool(settings.connect_timeout_s, settings.addresses)
    return LocalPool(settings.connect_timeout_s, settings.hosting)


POOL_BACKENDS.add("local", _local_backend)
POOL_BACKENDS.add_path("ray", "kairos.serving.ray.pool:RayPool")
