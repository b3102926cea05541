"""Start a ``kairos serve`` process and wait until it is ready (tests, benchmarks, demo).

The router is started with ``--port 0`` and prints its URL on its first stdout line, so no
port is guessed. ``RouterProcess.stop`` sends SIGTERM (the router drains, then stops its
workers) and kills it if it has not exited within the grace period.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from kairos.client.admin import READ_TIMEOUT_S, http_request
from kairos.errors import RuntimeServiceError
from kairos.protocol.api import HEALTH_READY_PATH, LISTEN_LINE


@dataclass
class RouterProcess:
    proc: subprocess.Popen[str]
    url: str
    lines: list[str] = field(default_factory=list)

    def get(
        self, path: str, token: str | None = None, timeout_s: float = READ_TIMEOUT_S
    ) -> tuple[int, str]:
        return http_request(self.url + path, token=token, timeout_s=timeout_s)

    def stop(self, grace_s: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)


def _pump(stream: object, sink: queue.Queue[str | None]) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        sink.put(line)
    sink.put(None)


def start_router(
    args: Sequence[str], ready_timeout_s: float = 90.0, listen: str = LISTEN_LINE
) -> RouterProcess:
    """Run ``kairos serve ARGS --port 0``; return once /v2/health/ready answers 200.

    ``listen`` is the line that carries the URL: ``LISTEN_CELLS`` with ``--cells`` (the
    balancer's URL; ready then means one cell answers through it)."""
    cmd = [sys.executable, "-m", "kairos", "serve", *args, "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1)
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + ready_timeout_s
    seen: list[str] = []
    url = ""
    try:
        while not url:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line is None:
                raise RuntimeServiceError(
                    f"kairos serve exited with status {proc.wait()} before listening "
                    f"(output: {''.join(seen)[-500:]!r}).",
                    "run the same command by hand to see its error.",
                )
            seen.append(line)
            if line.startswith(listen):
                url = line.split()[4]
        handle = RouterProcess(proc, url, seen)
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if handle.get(HEALTH_READY_PATH, timeout_s=2.0)[0] == 200:
                    return handle
            if proc.poll() is not None:
                raise RuntimeServiceError(
                    f"kairos serve exited with status {proc.returncode} before it was ready "
                    f"(output: {''.join(seen)[-500:]!r}).",
                    "see its error on stderr; run the same command by hand to reproduce it.",
                )
            time.sleep(0.1)
        raise RuntimeServiceError(
            f"router at {url} was not ready within {ready_timeout_s:g} s.",
            "check the workers start (see stderr).",
        )
    except BaseException:
        with contextlib.suppress(Exception):
            RouterProcess(proc, url).stop(grace_s=5.0)
        raise


@contextlib.contextmanager
def running_router(
    args: Sequence[str], ready_timeout_s: float = 90.0, listen: str = LISTEN_LINE
) -> Iterator[RouterProcess]:
    handle = start_router(args, ready_timeout_s, listen)
    try:
        yield handle
    finally:
        handle.stop()
