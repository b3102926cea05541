"""Event-loop choice shared by the router, the workers and the load generator."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
from collections.abc import Coroutine
from typing import Any, TypeVar

from kairos.errors import ConfigError

T = TypeVar("T")


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop where it is installed (it roughly halves per-request cost)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def settle_heap() -> None:
    """Move everything allocated so far out of the garbage collector's sight.

    A full collection walks every tracked object (numpy, grpc, the profiles: hundreds of
    thousands) and stalls the event loop for tens of milliseconds, which lands straight in
    the latency tail. After start-up those objects live forever, so they are frozen, and the
    young-generation threshold is raised so collections are rarer and stay small.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 100)


def parse_cpus(text: str | None) -> tuple[int, ...]:
    """``"0,2"`` -> (0, 2); empty or None -> () (no pinning)."""
    if not text or not text.strip():
        return ()
    try:
        return tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise ConfigError(
            f"CPU list {text!r} is not comma-separated core numbers.", "write e.g. 0 or 1,2."
        ) from None


def pin_to_cpus(cpus: tuple[int, ...]) -> None:
    """Restrict this process (threads started later inherit it) to ``cpus`` (Linux).

    On a machine shared by router, workers and client, the router's wake-ups otherwise
    queue behind the others' (docs/runtime.md, "A core for the router").
    """
    if not cpus:
        return
    if not hasattr(os, "sched_setaffinity"):
        raise ConfigError("CPU pinning is not supported on this platform.", "drop the CPU lists.")
    n = os.cpu_count() or 1
    missing = sorted(c for c in cpus if not 0 <= c < n)
    try:
        if missing:
            raise OSError
        os.sched_setaffinity(0, cpus)
    except OSError:
        raise ConfigError(
            f"cores {missing or list(cpus)} are not available (this machine has cores 0-{n - 1}"
            " and the process may be limited to fewer).",
            "list cores this process may run on.",
        ) from None


def check_bind_host(host: str, option: str = "--host") -> str:
    """``host`` if this machine can listen on it; else a ConfigError that names the host.

    Resolves the name and binds a throw-away socket to port 0 on it, so a name that does
    not resolve and an address that belongs to another machine are told apart from a port
    that is taken (which only the real bind can find).
    """
    fix = "pass an address of this machine: 127.0.0.1 (this machine only) or 0.0.0.0 (all)."
    if not host.strip():
        raise ConfigError(f"{option} is empty.", fix)
    try:
        infos = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise ConfigError(
            f"{option} {host!r} does not resolve to an address ({reason}).", fix
        ) from None
    error: OSError | None = None
    for family, kind, proto, _, address in infos:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.bind(address)
            return host
        except OSError as exc:
            error = exc
    strerror = error.strerror if error is not None else "no address"
    raise ConfigError(f"{option} {host!r} is not an address of this machine ({strerror}).", fix)
