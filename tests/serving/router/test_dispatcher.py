"""The dispatcher's rules, driven in-process: who is blamed for a failure, resizing without
losing a query, and draining."""

from __future__ import annotations

import asyncio

import pytest

from kairos.catalog import Pool, PriceTable
from kairos.scenario import Scenario
from kairos.serving.router.config import RouterConfig
from kairos.serving.router.http import Deferred, HttpRequest
from kairos.serving.router.router import Router
from kairos.serving.settings import DispatchSettings
from tests.serving.fakes import FakePool, ManualClock, admit, fake_router

TWO = "r5n.large=2"


def test_failures_a_query_did_not_cause_never_fail_it() -> None:
    async def main() -> None:
        router, pool = fake_router(TWO, dispatch=DispatchSettings(max_attempts=2))
        await router.start_workers()
        (answer,) = admit(router, 1)
        for _ in range(10):  # its process keeps dying under it, e.g. a co-hosted group killed
            (j,) = pool.in_flight
            pool.down(j, blame=False)
            pool.up(j)
        assert answer.status is None
        (j,) = pool.in_flight
        pool.finish(j, 5.0)
        assert answer.status == 200

    asyncio.run(main())


def test_a_query_that_may_have_caused_max_attempts_failures_gets_502() -> None:
    async def main() -> None:
        router, pool = fake_router(TWO, dispatch=DispatchSettings(max_attempts=2))
        await router.start_workers()
        (answer, other) = admit(router, 2)
        first = next(j for j, s in pool.in_flight.items() if s.qid == 0)
        pool.down(first, blame=True)  # timed out on it, alone in its process
        assert answer.status is None
        pool.up(first)
        again = next(j for j, s in pool.in_flight.items() if s.qid == 0)
        pool.down(again, blame=True)
        assert answer.status == 502
        assert "failed on 2 workers" in answer.response.body.decode()
        assert not router.driver.state.queue
        assert other.status is None  # the other query is unaffected

    asyncio.run(main())


def test_a_query_failed_for_good_is_not_started_on_an_idle_instance() -> None:
    async def main() -> None:
        router, pool = fake_router(TWO, dispatch=DispatchSettings(max_attempts=1))
        await router.start_workers()
        (answer,) = admit(router, 1)  # one instance serves it, the other stays idle
        (j,) = pool.in_flight
        pool.down(j, blame=True)
        assert answer.status == 502
        assert not pool.in_flight and [s.qid for s in pool.log] == [0]
        assert not router.driver.state.queue and not router.dispatcher.pending

    asyncio.run(main())


def test_a_draining_instance_whose_worker_dies_loses_no_query() -> None:
    async def main() -> None:
        router, pool = fake_router(TWO)
        await router.start_workers()
        answers = admit(router, 2)
        changed = await router.dispatcher.resize(Pool.parse("r5n.large=1"))
        (gone,) = changed["removed"]
        (kept,) = set(pool.in_flight) - {gone}
        lost = pool.in_flight[gone].qid
        pool.down(gone, blame=False)  # dies while it finishes its last query
        assert list(router.driver.state.queue) == [lost]
        pool.finish(kept, 5.0)  # the kept instance takes the lost query next
        assert pool.in_flight[kept].qid == lost
        pool.finish(kept, 5.0)
        assert [a.status for a in answers] == [200, 200]

    asyncio.run(main())


def test_resize_adds_and_drains_without_losing_a_query() -> None:
    async def main() -> None:
        router, pool = fake_router(TWO)
        await router.start_workers()
        answers = admit(router, 5)  # 2 running, 3 queued
        busy = sorted(pool.in_flight)
        changed = await router.dispatcher.resize(Pool.parse("g4dn.xlarge=1,r5n.large=1"))
        assert len(changed["added"]) == 1 and len(changed["removed"]) == 1
        (gone,) = changed["removed"]
        assert gone in busy  # both were busy: one drains, keeping its query
        assert router.driver.state.instance_type[changed["added"][0]] == "g4dn.xlarge"
        # The new instance took a queued query at once; the drained one gets nothing new.
        assert changed["added"][0] in pool.in_flight
        pool.finish(gone, 5.0)
        await asyncio.sleep(0)  # let the removal run
        assert gone in pool.removed and gone not in pool.in_flight
        while pool.in_flight:
            pool.finish(next(iter(pool.in_flight)), 5.0)
        assert [a.status for a in answers] == [200] * 5
        assert all(s.instance != gone for s in pool.log[2:])
        assert str(router.dispatcher.active_pool()) == "r5n.large=1,g4dn.xlarge=1"

    asyncio.run(main())


def test_resize_to_an_unknown_type_changes_nothing() -> None:
    from kairos.errors import KairosError

    async def main() -> None:
        router, _ = fake_router(TWO)
        await router.start_workers()
        with pytest.raises(KairosError, match="nope"):
            await router.dispatcher.resize(Pool.parse("nope=1"))
        assert router.driver.state.n_instances == 2

    asyncio.run(main())


def test_admin_resize_to_a_type_without_a_price_is_refused_with_400() -> None:
    # The metrics, the metadata and the traffic view price the pool: a type with a profile
    # but no price must be refused before anything changes, not accepted and fail later.
    async def main() -> None:
        prices = PriceTable({"r5n.large": 0.149}, "two-type test prices")
        cfg = RouterConfig(model="dien", pool=Pool.parse("r5n.large=2"), policy="fcfs")
        scenario = Scenario.build("dien", prices=prices)
        router = Router(cfg, scenario, pool=FakePool(), clock=ManualClock())
        await router.start_workers()
        body = b'{"pool": "g4dn.xlarge=1,r5n.large=1"}'
        answer = router.handle(HttpRequest("POST", "/v2/admin/pool", {}, body, 0.0))
        assert isinstance(answer, Deferred)
        for _ in range(10):
            if answer.done():
                break
            await asyncio.sleep(0)
        assert answer.response is not None
        assert answer.response.status == 400, answer.response.body
        assert b"g4dn.xlarge" in answer.response.body and b"no price" in answer.response.body
        assert str(router.dispatcher.active_pool()) == "r5n.large=2"

    asyncio.run(main())


def test_drain_answers_leftovers_with_503() -> None:
    async def main() -> None:
        drain_soon = DispatchSettings(drain_timeout_s=0.05)
        router, pool = fake_router("r5n.large=1", dispatch=drain_soon)
        await router.start_workers()
        answers = admit(router, 3)
        router.dispatcher.clock = lambda: asyncio.get_running_loop().time()
        await router.drain()
        assert [a.status for a in answers] == [503, 503, 503]
        assert not router.driver.state.queue
        pool.finish(next(iter(pool.in_flight)), 5.0)  # a late reply is dropped quietly
        assert [a.status for a in answers] == [503, 503, 503]

    asyncio.run(main())
