"""What the router observes: the arrival rate and batch-size mix over a sliding window, and
how close that traffic brings the running pool to its allowable throughput.

``TrafficWindow`` keeps the (arrival time, batch size) of the queries admitted in the last
``window_s`` seconds of the router's clock (profile time), capped at ``max_queries`` entries
so memory stays bounded whatever the rate (past the cap the rate is measured over the span
the kept entries cover). ``snapshot`` gives the observed rate and mix. A control loop beside
the router (an autoscaler) reads other windows too (``over``): the router then keeps
``keep_s`` seconds, the longest window anything reads.

``Headroom`` is how close that traffic brings the running pool to its allowable throughput;
the router shows it (``GET /v2/traffic``, ``/metrics``) when a ``HeadroomWatch`` is injected
(the planner that computes it lives in ``kairos.control.headroom``).
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from kairos.catalog import Pool
from kairos.errors import ConfigError
from kairos.scenario import Scenario
from kairos.workload import BatchMix


@dataclass(frozen=True)
class Traffic:
    """One observation: ``queries`` admitted over the last ``span_s`` seconds."""

    window_s: float
    span_s: float
    queries: int
    rate_qps: float
    mix: BatchMix | None

    def as_dict(self) -> dict[str, Any]:
        mix = self.mix
        return {
            "window_s": self.window_s,
            "span_s": self.span_s,
            "queries": self.queries,
            "rate_qps": self.rate_qps,
            "mean_batch": None if mix is None else mix.mean,
            "mix": None
            if mix is None
            else {"batch_size": mix.support.tolist(), "weight": mix.probs.tolist()},
        }


class TrafficWindow:
    def __init__(
        self, window_s: float, max_queries: int = 200_000, keep_s: float | None = None
    ) -> None:
        if not (math.isfinite(window_s) and window_s > 0):
            raise ConfigError(
                f"--traffic-window-s {window_s!r} is not a positive number.",
                "pass the seconds of traffic to observe, e.g. 60.",
            )
        self.window_s = window_s
        # Entries older than this are dropped: the longest window anything reads.
        self.keep_s = window_s if keep_s is None else max(window_s, keep_s)
        self._entries: deque[tuple[float, int]] = deque(maxlen=max_queries)
        self._since_s: float | None = None

    @property
    def since_s(self) -> float | None:
        """When the first query was noted (None before any)."""
        return self._since_s

    def note(self, now_s: float, batch: int) -> None:
        if self._since_s is None:
            self._since_s = now_s
        self._entries.append((now_s, batch))

    def snapshot(self, now_s: float) -> Traffic:
        """The traffic over ``window_s``, counted from the first query noted."""
        since = now_s if self._since_s is None else self._since_s
        return self.over(now_s, self.window_s, since)

    def over(self, now_s: float, window_s: float, since_s: float) -> Traffic:
        """The traffic over the last ``window_s`` (at most ``keep_s``) seconds, counted from
        ``since_s`` on when that is later (the window's start, before which nothing was
        watched)."""
        entries = self._entries
        while entries and entries[0][0] < now_s - self.keep_s:
            entries.popleft()
        horizon = now_s - min(window_s, self.keep_s)
        first = 0
        if self.keep_s > window_s and entries:
            # Entries are in arrival order: those in the window are the newest ones.
            times = np.fromiter((t for t, _ in entries), np.float64, len(entries))
            first = int(np.searchsorted(times, horizon, side="left"))
        n = len(entries) - first
        full = len(entries) == entries.maxlen
        start = entries[first][0] if full and n else max(horizon, since_s)
        span_s = max(now_s - start, 1e-9)
        if not n:
            return Traffic(window_s, span_s, 0, 0.0, None)
        batches = itertools.islice(entries, first, None)
        sizes, counts = np.unique(
            np.fromiter((b for _, b in batches), np.int64), return_counts=True
        )
        mix = BatchMix("observed", sizes, counts / counts.sum())
        return Traffic(window_s, span_s, n, n / span_s, mix)


@dataclass(frozen=True)
class Headroom:
    pool: str
    bound_qps: float
    allowable_qps: float | None
    mix_queries: int

    def utilisation(self, rate_qps: float) -> float:
        ref = self.allowable_qps if self.allowable_qps else self.bound_qps
        return rate_qps / ref if ref > 0 else math.inf


class HeadroomWatch(Protocol):
    """What the router asks of a headroom watch (``kairos.control.headroom.PlanWatch``, which
    the command line injects): the data plane itself plans nothing."""

    def update(self, traffic: Traffic) -> Headroom | None: ...

    async def run(self, snapshot: Callable[[], Traffic], every_s: float) -> None: ...

    def close(self) -> None: ...


# Builds a watch for (scenario, policy, the running pool as the dispatcher sees it).
HeadroomFactory = Callable[[Scenario, str, Callable[[], Pool]], HeadroomWatch]
