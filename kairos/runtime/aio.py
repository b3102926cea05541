"""Event-loop choice shared by the router, the workers and the load generator."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

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

    A full collection walks every tracked object (aiohttp, numpy, the profiles: hundreds of
    thousands) and stalls the event loop for tens of milliseconds, which lands straight in
    the latency tail. After start-up those objects live forever, so they are frozen, and the
    young-generation threshold is raised so collections are rarer and stay small.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 100)
