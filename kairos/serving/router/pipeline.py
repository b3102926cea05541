"""Keeping one query waiting at a model worker (``DispatchSettings.pipeline``).

Served one at a time, a worker idles for every round trip: the answer travels back, the
router decides, the next query travels out and is decoded. A model worker over framed TCP
can instead receive and decode the next query while the current one runs
(serving/worker/lane.py), so the router sends it early: when a query has run its estimated
(mean) service time on instance ``j`` without an answer while other queries queue, ``j`` is
*released*: the driver is told it finished (``Driver.complete``), the policy decides as on
any completion, and a query it starts on ``j`` goes out at once and waits at the worker. The
released query stays *out* until its answer comes. The policy still sees one running query
per instance, and its model of an instance does not change.

Rules, each for a reason:

* release only while others queue: with an empty queue nothing would go out behind it, and
  an instance shown idle while it still computes would only mislead the next decision;
* at most one query out per instance: a query whose estimate passes while the one ahead is
  still out is released when that one is answered (``late``), so a worker holds at most two;
* a worker lost with a query out loses neither: the dispatcher puts the released one back
  in the queue (or fails it, by the same blame count) before the driver re-queues the other;
* a retired instance with a query out stops only after that answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from kairos.distributor.base import Decision
from kairos.distributor.driver import Driver
from kairos.workload import Query


class Sent(Protocol):
    """What the pipeline needs of the dispatcher's record of a query."""

    query: Query


class Pipeline:
    """Per instance: the query it was released from, still at its worker (``out``); the
    timer that will release it from its current query (``armed``); instances whose timer
    fired while a query was still out (``late``)."""

    def __init__(
        self,
        driver: Driver,
        pending: dict[int, Any],
        now_s: Callable[[], float],
        start: Callable[[Sequence[Decision]], None],
        remove: Callable[[int], Any],
    ) -> None:
        self._driver = driver
        self._pending = pending  # the dispatcher's: qid -> the query's record, until answered
        self._now_s = now_s
        self._start = start  # carries out the driver's starts (sends them)
        self._remove = remove  # stops a drained instance's worker
        self.out: dict[int, Sent] = {}
        self.armed: dict[int, asyncio.TimerHandle] = {}
        self.late: set[int] = set()

    def arm(self, j: int, sent: Sent, time_scale: float) -> None:
        """``sent`` just went to ``j``: release ``j`` once its estimated service time passes."""
        state = self._driver.state
        wait_s = max(0.0, state.est_free_s[j] - state.now_s) * time_scale
        qid = sent.query.qid

        def fire() -> None:
            self.armed.pop(j, None)
            self.release(j, sent, qid)

        self.disarm(j)
        self.armed[j] = asyncio.get_running_loop().call_later(wait_s, fire)

    def release(self, j: int, sent: Sent, qid: int) -> None:
        """``sent`` (query ``qid``) has run its estimate on ``j`` unanswered: free ``j`` for the
        policy if others queue and nothing else of ``j``'s is out (module docstring)."""
        state = self._driver.state
        running = state.running[j]
        if running is None or running.qid != qid or self._pending.get(qid) is not sent:
            return  # answered, or lost and re-queued meanwhile
        if j in self.out:
            self.late.add(j)
            return
        if not state.queue:
            return
        _, starts = self._driver.complete(j, self._now_s())
        self.out[j] = sent
        self._start(starts)

    def disarm(self, j: int) -> None:
        """``j``'s current query was answered (or lost) before its estimate passed."""
        handle = self.armed.pop(j, None)
        if handle is not None:
            handle.cancel()
        self.late.discard(j)

    def answered(self, j: int, sent: Sent) -> bool:
        """Whether ``sent``'s answer is that of the query ``j`` was released from (then it is
        no longer out; the caller answers it and calls ``after_answer``)."""
        if self.out.get(j) is not sent:
            return False
        del self.out[j]
        return True

    def after_answer(self, j: int) -> None:
        """The query ``j`` was released from is answered: a retired ``j`` with nothing left
        stops; a query of ``j``'s whose estimate passed meanwhile is released now."""
        running = self._driver.state.running[j]
        if running is None:
            if j in self._driver.retired:
                self._remove(j)
            return
        sent = self._pending.get(running.qid)
        if j in self.late and sent is not None:
            self.late.discard(j)
            self.release(j, sent, running.qid)

    def lost(self, j: int) -> Sent | None:
        """``j`` failed: forget its timer; returns the released query still out there."""
        self.disarm(j)
        return self.out.pop(j, None)

    def close(self) -> None:
        for j in list(self.armed):
            self.disarm(j)
