"""``--workers local``: start the pool's workers as child processes and keep them alive.

Each worker process is its spec's command line (``WorkerSpec.argv``) with ``--port 0``: it
binds free loopback ports and prints them on its first stdout line, so there is no port race.
``hosting`` decides how instances map to processes: ``instance`` (one process per instance)
or ``type`` (replay mode: one process per run of same-type instances, each instance still its
own thread, socket, connection and RNG stream; see docs/runtime.md for the measurements
behind the default). A watcher task per process reports an unexpected exit to its owner (the
local worker pool) for every instance the process hosted. A hung worker is killed by
``restart`` too; restarting one instance of a group restarts the group once, and the other
instances are reported down so they reconnect. Children watch their parent's pid and exit if
the router dies without cleaning up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import replace

from kairos.errors import RuntimeServiceError
from kairos.registry import Registry
from kairos.serving.worker.launch import WorkerSpec
from kairos.serving.worker.service import READY_LINE

START_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0

# How local instances map to processes; the value says whether same-type replay instances
# may share one process.
HOSTINGS: Registry[bool] = Registry(
    "worker hosting", "pass --worker-hosting type (a process per type) or instance."
)
HOSTINGS.add("type", True)
HOSTINGS.add("instance", False)


def group_instances(specs: list[WorkerSpec], hosting: str, first: int = 0) -> list[list[int]]:
    """Instances per process: singletons, or runs of same-type replay instances whose seeds
    follow each other (so every instance keeps the RNG stream it has when alone). Instance
    ids are ``first``, ``first + 1``, ... in ``specs`` order."""
    share = HOSTINGS.get(hosting)
    groups: list[list[int]] = []
    for k, spec in enumerate(specs):
        j = first + k
        prev = specs[groups[-1][-1] - first] if groups else None
        shareable = share and spec.mode == "replay" and spec.handler is None
        if (
            shareable
            and prev is not None
            and prev.instance_type == spec.instance_type
            and replace(prev, seed=spec.seed) == spec
            and prev.seed + 1 == spec.seed
        ):
            groups[-1].append(j)
        else:
            groups.append([j])
    return groups


class LocalSupervisor:
    """Owns the worker processes of one pool; index ``j`` is the pool's instance ``j``.

    ``on_exit(j)`` reports an unexpected exit of the process hosting ``j``.
    """

    def __init__(self, on_exit: Callable[[int], None], hosting: str = "instance") -> None:
        HOSTINGS.check(hosting)
        self._hosting = hosting
        self._on_exit = on_exit
        self._specs: list[WorkerSpec] = []
        self._groups: list[list[int]] = []
        self._group_of: dict[int, int] = {}
        self._procs: list[asyncio.subprocess.Process | None] = []
        self._watchers: list[asyncio.Task[None] | None] = []
        self._locks: list[asyncio.Lock] = []
        self._addresses: list[str] = []
        self._stopping = False

    def pid(self, j: int) -> int | None:
        proc = self._procs[self._group_of[j]]
        return None if proc is None else proc.pid

    def group_size(self, j: int) -> int:
        return len(self._groups[self._group_of[j]])

    async def add(self, specs: list[WorkerSpec]) -> list[str]:
        """Start processes for new instances (ids continue after the existing ones); return
        the new instances' addresses in order."""
        first = len(self._specs)
        self._specs += specs
        self._addresses += [""] * len(specs)
        new_groups = group_instances(specs, self._hosting, first)
        start = len(self._groups)
        for members in new_groups:
            self._group_of.update({j: len(self._groups) for j in members})
            self._groups.append(members)
            self._procs.append(None)
            self._watchers.append(None)
            self._locks.append(asyncio.Lock())
        await asyncio.gather(*(self._start(g) for g in range(start, len(self._groups))))
        return self._addresses[first:]

    async def _start(self, g: int) -> None:
        members = self._groups[g]
        spec = self._specs[members[0]]
        # Free ports (printed on the ready line), and gone with this process if it dies.
        args = replace(spec, port=0, parent_pid=os.getpid()).argv(len(members))
        proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
        self._procs[g] = proc
        try:
            ports = await asyncio.wait_for(_read_ports(proc), START_TIMEOUT_S)
        except TimeoutError:
            await _kill(proc)
            raise RuntimeServiceError(
                f"worker for instances {members} ({spec.instance_type}) did not start within "
                f"{START_TIMEOUT_S:g} s.",
                "run the same 'kairos worker' command by hand to see what it waits for.",
            ) from None
        except RuntimeServiceError:
            await _kill(proc)
            raise RuntimeServiceError(
                f"worker for instances {members} ({spec.instance_type}) exited before it was "
                f"ready (exit status {proc.returncode}); its error is above.",
                "fix what its error names, or run the same 'kairos worker' command by hand.",
            ) from None
        if len(ports) != len(members):
            await _kill(proc)
            raise RuntimeServiceError(
                f"{len(ports)} ports for {len(members)} instances", "report a bug."
            )
        for j, port in zip(members, ports, strict=True):
            self._addresses[j] = f"127.0.0.1:{port}"
        self._watchers[g] = asyncio.create_task(self._watch(g, proc))

    async def restart(self, j: int, stale_pid: int | None = None) -> str:
        """Kill instance ``j``'s process if it still runs (it may hang) and start a fresh one.

        ``stale_pid`` is the process the caller found failing: if the group was already
        restarted since (by a sibling instance's recovery), the new process is kept.
        """
        g = self._group_of[j]
        async with self._locks[g]:
            proc = self._procs[g]
            if (
                stale_pid is not None
                and proc is not None
                and proc.pid != stale_pid
                and proc.returncode is None
            ):
                return self._addresses[j]
            await self._stop_group(g)
            await self._start(g)
        # Siblings' connections went with the old process; they must reconnect too.
        for k in self._groups[g]:
            if k != j:
                self._on_exit(k)
        return self._addresses[j]

    async def stop(self, instances: list[int]) -> list[int]:
        """Stop the processes all of whose instances are in ``instances``; return the
        instances whose process still runs (it co-hosts an instance not being stopped)."""
        gone = set(instances)
        kept = []
        for g, members in enumerate(self._groups):
            if not gone & set(members):
                continue
            if set(members) <= gone:
                async with self._locks[g]:
                    await self._stop_group(g)
            else:
                kept += [j for j in members if j in gone]
        return kept

    async def _stop_group(self, g: int) -> None:
        watcher, proc = self._watchers[g], self._procs[g]
        self._watchers[g] = None
        if watcher is not None:
            watcher.cancel()
        if proc is not None:
            await _kill(proc)

    async def _watch(self, g: int, proc: asyncio.subprocess.Process) -> None:
        await proc.wait()
        if not self._stopping and self._procs[g] is proc:
            for j in self._groups[g]:
                self._on_exit(j)

    async def stop_all(self) -> None:
        """SIGTERM every worker, then SIGKILL those still alive after a grace period."""
        self._stopping = True
        for w in self._watchers:
            if w is not None:
                w.cancel()
        live = [p for p in self._procs if p is not None and p.returncode is None]
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in live)), STOP_GRACE_S)
        except TimeoutError:
            for p in live:
                if p.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
            await asyncio.gather(*(p.wait() for p in live))


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await proc.wait()


async def _read_ports(proc: asyncio.subprocess.Process) -> list[int]:
    assert proc.stdout is not None
    while True:
        line = (await proc.stdout.readline()).decode(errors="replace")
        if not line:
            raise RuntimeServiceError("worker exited before it was ready.", "see its stderr.")
        if line.startswith(READY_LINE):
            return [int(p) for p in line.rsplit("=", 1)[1].split(",")]
