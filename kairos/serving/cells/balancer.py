"""The load balancer in front of the cells: its configuration (HAProxy's), and HAProxy run as
a child process that Kairos starts, reloads and stops.

Why HAProxy: it is the standard L7 balancer of Debian and of most inference fronts, it checks
each router's readiness, retries a failed request on another server, drains a server, and its
runtime API changes weights and states without a restart. The configuration written here is
the same one a user's own balancer gets (``--balancer-config FILE``).

What the configuration says, and why:

* every router is a server weighted by its cell's planned capacity (``kairos.sim.cells``);
* ``option httpchk GET /v2/health/ready`` every ``health_interval_ms`` (every
  ``health_fast_interval_ms`` while a cell is down or changing state): a router that is
  starting, draining or gone is taken out; ``observe layer4`` with ``on-error mark-down``
  takes it out at the first refused connection, before the next check;
* ``http-reuse always``: a request goes over any idle connection to the router picked, so
  the balancer seldom opens a connection (each costs it and the router a connect, an accept
  and a close);
* ``retry-on conn-failure empty-response 503`` with ``retries 1`` and ``option redispatch 1``:
  a query whose router died before answering (or answered 503: full or draining) is sent once
  more, to another cell; inference is idempotent;
* a query that still fails gets a clear 503 with a JSON ``error`` body (``errorfile``), never
  a silent close;
* ``/v2/cells`` and ``/metrics`` go to the cell set's own admin server (the list of cells, the
  aggregate metrics); every other path goes to a router.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from kairos.errors import ConfigError, RuntimeServiceError
from kairos.protocol.api import HEALTH_READY_PATH, METRICS_PATH
from kairos.serving.cells.config import BALANCES, HAPROXY_INSTALL, CellSettings

CELLS_PATH = "/v2/cells"  # the cell set's admin API (list, resize a cell, add or remove cells)
BACKEND = "kairos_cells"
ADMIN_BACKEND = "kairos_cells_admin"
ERROR_STATUSES = (502, 503, 504)


@dataclass(frozen=True)
class CellServer:
    """One cell as the balancer sees it: its router's address and its weight."""

    name: str  # cell0, cell1, ...
    host: str
    port: int
    weight: int

    def spec(self, settings: CellSettings) -> str:
        """The server's address and options, as a config line and ``add server`` take them:
        health checks of its readiness, and taken out at its first refused connection (a
        router killed), or after ``health_falls`` failed checks in a row (a router too busy
        to answer one check in time is not taken out)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (
            f"{host}:{self.port} weight {self.weight} check inter "
            f"{settings.health_interval_ms}ms fastinter {settings.health_fast_interval_ms}ms "
            f"downinter {settings.health_fast_interval_ms}ms fall {settings.health_falls} "
            "rise 1 observe layer4 error-limit 1 on-error mark-down"
        )


def error_page(status: int) -> bytes:
    """What a client gets when no cell could answer: always a 503 with a JSON error, so a
    client tells "retry later" from a bad request (HAProxy sends the file as it is)."""
    message = {
        502: "the cell serving this query failed before answering, and its retry on another "
        "cell failed too; retry the query",
        503: "no cell is ready to serve this query (all are starting, draining or down); retry",
        504: "the cell serving this query did not answer in time; retry the query",
    }[status]
    body = orjson.dumps({"error": message})
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Retry-After: 1\r\nCache-Control: no-cache\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def render(
    settings: CellSettings,
    bind: tuple[str, int],
    servers: Sequence[CellServer],
    admin: tuple[str, int],
    errors_dir: Path,
    runtime_socket: Path | None,
) -> str:
    """HAProxy's configuration for ``servers`` behind ``bind``; ``admin`` is the cell set's
    admin server; ``runtime_socket``: where Kairos's own HAProxy takes runtime commands."""
    BALANCES.check(settings.balance)
    host, port = bind
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [
        "# Written by kairos serve --cells: the cells' routers behind one endpoint.",
        "global",
        f"    maxconn {settings.max_connections}",
        f"    nbthread {settings.balancer_threads}",
        f"    tune.bufsize {settings.request_buffer_bytes}",
    ]
    if runtime_socket is not None:
        lines.append(f"    stats socket {runtime_socket} mode 600 level admin")
    lines += [
        "",
        "defaults",
        "    mode http",
        f"    timeout connect {settings.connect_timeout_ms}ms",
        f"    timeout check {settings.health_timeout_ms}ms",
        f"    timeout client {settings.server_timeout_s:g}s",
        f"    timeout server {settings.server_timeout_s:g}s",
        "    timeout http-keep-alive 75s",
        f"    retries {settings.retries}",
        "    option http-buffer-request",  # a request is retried only if it was read whole
        "    option redispatch 1",
        f"    retry-on {settings.retry_on}",
        *(f"    errorfile {s} {errors_dir / f'{s}.http'}" for s in ERROR_STATUSES),
        "",
        "frontend kairos",
        f"    bind {listen}",
        f"    acl cells_admin path_beg {CELLS_PATH}",
        f"    acl cells_admin path {METRICS_PATH}",
        f"    use_backend {ADMIN_BACKEND} if cells_admin",
        f"    default_backend {BACKEND}",
        "",
        f"backend {BACKEND}",
        f"    balance {BALANCES.get(settings.balance)}",
        f"    http-reuse {settings.connection_reuse}",
        f"    option httpchk GET {HEALTH_READY_PATH}",
        "    http-check expect status 200",
        *(f"    server {s.name} {s.spec(settings)}" for s in servers),
        "",
        f"backend {ADMIN_BACKEND}",
        "    retries 0",
        f"    server admin {admin[0]}:{admin[1]}",
        "",
    ]
    return "\n".join(lines)


def write_config(
    path: Path,
    settings: CellSettings,
    bind: tuple[str, int],
    servers: Sequence[CellServer],
    admin: tuple[str, int],
    runtime_socket: Path | None = None,
) -> None:
    """Write the configuration to ``path`` and its error pages beside it (atomically: a
    balancer reloading never reads half a file)."""
    errors_dir = path.parent
    for status in ERROR_STATUSES:
        (errors_dir / f"{status}.http").write_bytes(error_page(status))
    text = render(settings, bind, servers, admin, errors_dir, runtime_socket)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def die_with_parent() -> None:
    """In a child before it runs: ask Linux to send it SIGTERM when the thread that started it
    ends, so that a cell set killed outright leaves no router or balancer behind (a router
    stopped so stops its workers). No-op where prctl is unavailable."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def haproxy_binary(settings: CellSettings) -> str:
    """HAProxy's path; where it is not installed, one line saying how to install it."""
    found = shutil.which(settings.haproxy_bin)
    if found is None:
        raise ConfigError(
            f"kairos serve --cells runs HAProxy in front of the cells, and "
            f"{settings.haproxy_bin!r} is not installed.",
            f"{HAPROXY_INSTALL}, or pass --balancer-config FILE to run your own balancer.",
        )
    return found


class Haproxy:
    """HAProxy run by Kairos on ``config``: started, reloaded (a new process takes over the
    port and the old one finishes its open queries: ``-sf``), asked through its runtime
    socket, stopped."""

    def __init__(self, binary: str, config: Path, runtime_socket: Path) -> None:
        self.binary = binary
        self.config = config
        self.socket = runtime_socket
        self.proc: subprocess.Popen[bytes] | None = None
        self._old: list[subprocess.Popen[bytes]] = []

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def check(self) -> None:
        """Refuse a configuration HAProxy would refuse, with its own words."""
        done = subprocess.run(
            [self.binary, "-c", "-q", "-f", str(self.config)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeServiceError(
                f"HAProxy refused the configuration {self.config}: "
                f"{(done.stderr or done.stdout).strip()[-400:]}",
                "check --host and --port, and that no other balancer holds the port.",
            )

    def start(self, ready_timeout_s: float = 10.0) -> None:
        """Start (or, when running, reload) HAProxy; return once its runtime socket answers."""
        self.check()
        argv = [self.binary, "-db", "-f", str(self.config)]
        if self.proc is not None and self.proc.poll() is None:
            argv += ["-sf", str(self.proc.pid)]
            self._old.append(self.proc)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()  # the new process binds it afresh
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, preexec_fn=die_with_parent
        )
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeServiceError(
                    f"HAProxy exited with status {self.proc.returncode} on start.",
                    f"run {self.binary} -db -f {self.config} by hand to see why.",
                )
            with contextlib.suppress(OSError):
                self.command("show info")
                self._reap()
                return
            time.sleep(0.02)
        raise RuntimeServiceError(
            f"HAProxy did not answer on {self.socket} within {ready_timeout_s:g} s.",
            "check the machine is not out of memory or file descriptors.",
        )

    def _reap(self) -> None:
        self._old = [p for p in self._old if p.poll() is None]

    def command(self, line: str, timeout_s: float = 5.0) -> str:
        """One runtime API command, its answer as text (OSError when HAProxy is not there)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout_s)
            s.connect(str(self.socket))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def servers(self) -> dict[str, dict[str, str]]:
        """Each cell's row of ``show stat``: status, weight, open and total sessions,
        retries, redispatches, 5xx answers, ..."""
        text = self.command("show stat")
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if not lines or not lines[0].startswith("# "):
            return {}
        header = lines[0][2:].split(",")
        rows = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == BACKEND:
                rows[row["svname"]] = row
        return rows

    def set_weight(self, name: str, weight: int) -> None:
        self.command(f"set server {BACKEND}/{name} weight {weight}")

    def set_state(self, name: str, state: str) -> None:
        """``ready``, ``drain`` (no new queries; open ones finish) or ``maint``."""
        self.command(f"set server {BACKEND}/{name} state {state}")

    def set_address(self, name: str, host: str, port: int) -> None:
        """Send the cell's queries and checks to ``host:port`` from now on (its router came
        back elsewhere)."""
        answer = self.command(f"set server {BACKEND}/{name} addr {host} port {port}")
        if "changed" not in answer and "no need to change" not in answer:
            raise RuntimeServiceError(
                f"HAProxy refused to move {BACKEND}/{name} to {host}:{port}: "
                f"{answer.strip()[:300]}",
                "check the balancer's runtime socket and its version (2.4 or later).",
            )

    def add_server(self, server: CellServer, settings: CellSettings) -> None:
        """A new cell, without a reload (the configuration file is rewritten beside it)."""
        name = f"{BACKEND}/{server.name}"
        answer = self.command(f"add server {name} {server.spec(settings)}")
        if "New server registered" not in answer:
            raise RuntimeServiceError(
                f"HAProxy refused to add {name}: {answer.strip()[:300]}",
                "check the balancer's runtime socket and its version (2.4 or later).",
            )
        self.command(f"enable health {name}")
        self.command(f"enable server {name}")

    def delete_server(self, name: str) -> bool:
        """Remove a server in maintenance with no connection left; False: not yet."""
        answer = self.command(f"del server {BACKEND}/{name}")
        return "Server deleted" in answer

    def stop(self, grace_s: float = 5.0) -> None:
        for proc in [*self._old, *([self.proc] if self.proc is not None else [])]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGUSR1)  # soft stop: finish open queries
                try:
                    proc.wait(grace_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self._old = []
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
