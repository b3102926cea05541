"""A model worker started to be measured, and a blocking client for it (``kairos profile``).

The worker is the same ``kairos worker --mode model`` process the router starts, from the same
command line (``WorkerSpec.argv``; so it is confined the same way when its type is a local
type), its stderr is passed on line by line, and queries go over the framed-TCP carrier the
router uses, one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType
from typing import IO

from kairos.errors import RuntimeServiceError
from kairos.protocol.frames import frame, unframe
from kairos.protocol.tensors import TensorSpec, parse_specs
from kairos.serving.pool.transport import TcpLink
from kairos.serving.worker.handlers import QueryTimes
from kairos.serving.worker.launch import WorkerSpec
from kairos.serving.worker.service import READY_LINE

START_TIMEOUT_S = 120.0
QUERY_TIMEOUT_S = 300.0


class WorkerProbe:
    """``with WorkerProbe(...) as probe: probe.query(body, json_length) -> QueryTimes``."""

    def __init__(self, worker: WorkerSpec, progress: Callable[[str], None] | None = None) -> None:
        # A model worker on a free port (printed on its ready line) that exits with us.
        self._cmd = replace(worker, mode="model", port=0, parent_pid=os.getpid()).argv()
        self._say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
        self._label = f"{worker.model} on {worker.instance_type}"
        self._proc: subprocess.Popen[str] | None = None
        self._loop = asyncio.new_event_loop()
        self._link: TcpLink | None = None
        self._last: tuple[bytes, bytes] | None = None
        self._stderr: threading.Thread | None = None
        self.inputs: tuple[TensorSpec, ...] | None = None

    def __enter__(self) -> WorkerProbe:
        proc = subprocess.Popen(
            self._cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._proc = proc
        assert proc.stderr is not None
        self._stderr = threading.Thread(target=self._forward, args=(proc.stderr,), daemon=True)
        self._stderr.start()
        try:
            port = self._wait_ready(proc)
            self._link = TcpLink(f"127.0.0.1:{port}")
            description = self._loop.run_until_complete(self._link.open(30.0))
            self.inputs = parse_specs(description.get("inputs"))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _forward(self, stream: IO[str]) -> None:
        for line in iter(stream.readline, ""):
            self._say(f"worker: {line.rstrip()}")

    def _wait_ready(self, proc: subprocess.Popen[str]) -> int:
        """The port on the worker's ready line (printed once its model is loaded)."""
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        status: int | str = "still running"
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:  # the worker exited before it was ready
                status = proc.wait(5.0)
                if self._stderr is not None:
                    self._stderr.join(2.0)  # its last words come before ours
                break
            if line.startswith(READY_LINE):
                return int(line.rsplit("=", 1)[1])
        raise RuntimeServiceError(
            f"the worker for {self._label} did not become ready (exit status {status}).",
            "see its error above (lines starting with 'worker:'); run the same 'kairos "
            "worker --mode model' command by hand to reproduce it.",
        )

    def query(self, body: bytes, json_length: int | None) -> QueryTimes:
        """One query; total = the round trip, prepare/infer = the worker's own figures."""
        if self._last is None or self._last[0] is not body:  # frame each body once
            header: dict[str, int] = {"qid": 0, "batch": 0}
            if json_length is not None:
                header["json_length"] = json_length
            self._last = (body, frame(header, body))
        reply, total_ms = self._loop.run_until_complete(self._call(self._last[1]))
        head, _ = unframe(reply)
        if head.get("code") != 200:
            raise RuntimeServiceError(
                f"the worker for {self._label} answered {head.get('code')}: {head.get('error')}",
                "check the model runs on the inputs it declares (docs/models.md).",
            )
        nan = float("nan")
        return QueryTimes(head.get("prepare_ms", nan), head.get("infer_ms", nan), total_ms)

    async def _call(self, message: bytes) -> tuple[bytes, float]:
        assert self._link is not None
        t0 = time.perf_counter()
        reply = await self._link.call(message, QUERY_TIMEOUT_S)
        return reply, (time.perf_counter() - t0) * 1000.0

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._link is not None:
            self._loop.run_until_complete(self._link.close())
        self._loop.close()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10.0)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(5.0)


def _pump(stream: IO[str] | None, sink: queue.Queue[str | None]) -> None:
    if stream is not None:
        for line in iter(stream.readline, ""):
            sink.put(line)
    sink.put(None)
