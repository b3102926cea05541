"""``--workers local``: start the pool's workers as child processes and keep them alive.

Each worker is ``python -m kairos worker ... --port 0``; it binds a free loopback port and
prints it on its first stdout line, so there is no port race. A watcher task per child
reports an unexpected exit to the router (which marks the instance down and calls
``restart``). A hung worker is killed by ``restart`` too. Children watch their parent's pid
and exit if the router dies without cleaning up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

from kairos.errors import RuntimeServiceError
from kairos.runtime.worker import READY_LINE

START_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0


@dataclass(frozen=True)
class WorkerSpec:
    instance_type: str
    model: str
    mode: str = "replay"
    handler: str | None = None
    time_scale: float = 1.0
    seed: int = 0
    profiles_path: str | None = None
    transport: str = "tcp"


class LocalSupervisor:
    """Owns the worker processes of one router; index ``j`` is the router's instance ``j``."""

    def __init__(self, specs: list[WorkerSpec], on_exit: Callable[[int], None]) -> None:
        self._specs = specs
        self._on_exit = on_exit
        self._procs: list[asyncio.subprocess.Process | None] = [None] * len(specs)
        self._watchers: list[asyncio.Task[None] | None] = [None] * len(specs)
        self._stopping = False
        self.restarts = 0

    def pid(self, j: int) -> int | None:
        proc = self._procs[j]
        return None if proc is None else proc.pid

    async def start_all(self) -> list[str]:
        """Start every worker; return their addresses in instance order."""
        return list(await asyncio.gather(*(self.start(j) for j in range(len(self._specs)))))

    async def start(self, j: int) -> str:
        spec = self._specs[j]
        args = [
            sys.executable, "-m", "kairos.runtime",
            "--instance-type", spec.instance_type, "--model", spec.model,
            "--port", "0", "--mode", spec.mode, "--time-scale", repr(spec.time_scale),
            "--seed", str(spec.seed), "--parent-pid", str(os.getpid()),
            "--transport", spec.transport,
        ]  # fmt: skip
        if spec.handler:
            args += ["--handler", spec.handler]
        if spec.profiles_path:
            args += ["--profiles", spec.profiles_path]
        proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
        self._procs[j] = proc
        try:
            port = await asyncio.wait_for(_read_port(proc), START_TIMEOUT_S)
        except (TimeoutError, RuntimeServiceError):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise RuntimeServiceError(
                f"worker {j} ({spec.instance_type}) did not start within {START_TIMEOUT_S:g} s "
                f"(exit status {proc.returncode}).",
                "run the same 'kairos worker' command by hand to see its error.",
            ) from None
        self._watchers[j] = asyncio.create_task(self._watch(j, proc))
        return f"127.0.0.1:{port}"

    async def restart(self, j: int) -> str:
        """Kill worker ``j`` if it still runs (it may hang) and start a fresh one."""
        await self._kill(j)
        self.restarts += 1
        return await self.start(j)

    async def _kill(self, j: int) -> None:
        watcher, proc = self._watchers[j], self._procs[j]
        self._watchers[j] = None
        if watcher is not None:
            watcher.cancel()
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def _watch(self, j: int, proc: asyncio.subprocess.Process) -> None:
        await proc.wait()
        if not self._stopping and self._procs[j] is proc:
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


async def _read_port(proc: asyncio.subprocess.Process) -> int:
    assert proc.stdout is not None
    while True:
        line = (await proc.stdout.readline()).decode(errors="replace")
        if not line:
            raise RuntimeServiceError("worker exited before it was ready.", "see its stderr.")
        if line.startswith(READY_LINE):
            return int(line.rsplit("=", 1)[1])
