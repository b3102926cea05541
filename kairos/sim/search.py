"""The rate search shared by the simulator's and the live allowable-throughput searches.

``rate_search`` is a generator: it yields the next rate to try and receives whether that rate
passed. Bracketing multiplies or divides the guess by ``step`` until a passing and a failing
rate are known, then geometric bisection narrows them until ``hi / lo - 1 <= precision``. It
returns ``(highest passing rate, lowest failing rate)``; ``(0, hi)`` when nothing passed within
``max_steps`` divisions and ``(lo, inf)`` when nothing failed within ``max_steps``
multiplications. The simulator drives it with a plain function, the live load generator with
an async one, so both searches are the same code.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Generator

from kairos.errors import ConfigError

RateSearch = Generator[float, bool, tuple[float, float]]


def rate_search(
    guess_qps: float, precision: float, step: float = 2.0, max_steps: int = 14
) -> RateSearch:
    if not 0 < precision < 1 or step <= 1 or not guess_qps > 0:
        raise ConfigError(
            f"search settings guess={guess_qps!r} precision={precision!r} step={step!r} are "
            "invalid.",
            "use a positive guess, 0 < precision < 1 and step > 1.",
        )
    rate = guess_qps
    if (yield rate):
        lo = rate
        for _ in range(max_steps):
            if not (yield lo * step):
                break
            lo *= step
        else:
            return lo, math.inf
        hi = lo * step
    else:
        hi = rate
        for _ in range(max_steps):
            if (yield hi / step):
                break
            hi /= step
        else:
            return 0.0, hi
        lo = hi / step
    while hi / lo - 1 > precision:
        mid = math.sqrt(lo * hi)
        if (yield mid):
            lo = mid
        else:
            hi = mid
    return lo, hi


def drive(search: RateSearch, passes: Callable[[float], bool]) -> tuple[float, float]:
    """Run ``search`` with a synchronous pass/fail test."""
    try:
        rate = next(search)
        while True:
            rate = search.send(passes(rate))
    except StopIteration as done:
        return done.value


async def drive_async(
    search: RateSearch, passes: Callable[[float], Awaitable[bool]]
) -> tuple[float, float]:
    """Run ``search`` with an asynchronous pass/fail test (a live load trial)."""
    try:
        rate = next(search)
        while True:
            rate = search.send(await passes(rate))
    except StopIteration as done:
        return done.value
