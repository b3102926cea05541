"""``LinkedPool``'s recovery loop, driven with a pool whose workers never come up."""

from __future__ import annotations

import asyncio

from kairos.catalog import Pool
from kairos.serving.pool.base import LinkedPool, Slot
from kairos.serving.router.config import RouterConfig
from kairos.serving.worker.launch import WorkerSpec


class NeverUp(LinkedPool):
    """Every relaunch 'starts' a new process (pid 101, 102, ...) that never answers."""

    def __init__(self, tries: int) -> None:
        super().__init__(connect_timeout_s=0.1)
        self.stale: list[int | None] = []
        self._tries = tries

    async def _launch(self, first: int, specs: list[WorkerSpec]) -> list[str | None]:
        return [None] * len(specs)

    async def _relaunch(self, j: int, stale_pid: int | None) -> tuple[str, int | None]:
        self.stale.append(stale_pid)
        if len(self.stale) == self._tries:
            self._closing = True  # the recovery loop ends after this try
        return "127.0.0.1:9", 100 + len(self.stale)

    async def _open(self, j: int) -> None:
        raise OSError("the worker does not answer")


def test_a_relaunched_process_that_never_answers_is_the_next_one_restarted() -> None:
    # Without this, recovery would keep reconnecting to a hung new process (its pid is not
    # the one that first failed) and never restart it.
    cfg = RouterConfig(model="dien", pool=Pool.parse("r5n.large=1"), policy="fcfs")
    pool = NeverUp(tries=3)
    pool.slots.append(Slot(cfg.instance_spec("r5n.large", 0)))
    asyncio.run(pool._recover(0, 7))
    assert pool.stale == [7, 101, 102]
