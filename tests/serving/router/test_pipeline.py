"""Keeping one query waiting at the worker (``DispatchSettings.pipeline``), driven in-process
on a fake pool whose instances take one query behind the one they serve: when an instance
is released, that nothing accepted is lost when its worker fails with two queries out, and
that a drained instance stops only after both are answered."""

from __future__ import annotations

import asyncio

from kairos.catalog import Pool
from kairos.serving.router.router import Router
from kairos.serving.settings import DispatchSettings
from tests.serving.fakes import Answer, FakePool, admit, fake_router

# Longer than any estimated service time of these tests (dien, batch 10: milliseconds), so
# a release timer armed at a dispatch has fired after one such sleep.
PAST_ESTIMATE_S = 0.3


def make_router(
    pool_text: str = "r5n.large=1", *, pipeline: bool = True, max_attempts: int = 3
) -> tuple[Router, FakePool]:
    dispatch = DispatchSettings(pipeline=pipeline, max_attempts=max_attempts)
    return fake_router(pool_text, pipelined=True, dispatch=dispatch)


def statuses(answers: list[Answer]) -> list[int | None]:
    return [a.status for a in answers]


def sent_behind(router: Router) -> float:
    return router.metrics.sent_behind._value.get()


def test_the_next_query_goes_out_behind_one_past_its_estimate_and_answers_keep_order() -> None:
    async def main() -> None:
        router, pool = make_router()
        await router.start_workers()
        answers = admit(router, 3)
        assert [s.qid for s in pool.in_flight.values()] == [0] and not pool.behind
        await asyncio.sleep(PAST_ESTIMATE_S)  # query 0 ran past its estimate; others queue
        assert pool.behind[0].qid == 1 and sent_behind(router) == 1
        assert list(router.driver.state.queue) == [2]
        assert router.dispatcher.in_flight() == 2
        await asyncio.sleep(PAST_ESTIMATE_S)  # query 1's estimate passes while 0 is still out
        assert 0 not in pool.behind or pool.behind[0].qid == 1  # no third query
        pool.finish(0, 5.0)  # 0 answered: 1 is due already, so 2 goes out behind it at once
        assert statuses(answers) == [200, None, None]
        assert pool.behind[0].qid == 2 and sent_behind(router) == 2
        pool.finish(0, 5.0)
        await asyncio.sleep(PAST_ESTIMATE_S)  # 2 past its estimate, but nothing queues
        pool.finish(0, 5.0)
        assert statuses(answers) == [200, 200, 200]
        assert [s.qid for s in pool.log] == [0, 1, 2]
        assert router.dispatcher.in_flight() == 0 and not router.driver.state.queue
        assert router.driver.state.idle == {0}

    asyncio.run(main())


def test_without_pipeline_or_a_queue_no_query_is_sent_behind() -> None:
    async def main() -> None:
        router, pool = make_router(pipeline=False)
        await router.start_workers()
        answers = admit(router, 2)
        await asyncio.sleep(PAST_ESTIMATE_S)
        assert not pool.behind and list(router.driver.state.queue) == [1]
        pool.finish(0, 5.0)
        pool.finish(0, 5.0)
        assert statuses(answers) == [200, 200]

        router, pool = make_router()  # pipelining, but the query is alone
        await router.start_workers()
        (answer,) = admit(router, 1)
        await asyncio.sleep(PAST_ESTIMATE_S)
        assert router.driver.state.running[0] is not None  # not released: nothing to gain
        (late,) = admit(router, 1)  # arrives after the estimate: waits for the answer
        assert not pool.behind
        pool.finish(0, 5.0)
        pool.finish(0, 5.0)
        assert statuses([answer, late]) == [200, 200] and sent_behind(router) == 0

    asyncio.run(main())


def test_a_worker_lost_with_two_queries_out_loses_neither() -> None:
    async def main() -> None:
        router, pool = make_router()
        await router.start_workers()
        answers = admit(router, 3)
        await asyncio.sleep(PAST_ESTIMATE_S)
        assert pool.in_flight[0].qid == 0 and pool.behind[0].qid == 1
        pool.down(0, blame=False)  # e.g. its process killed
        assert list(router.driver.state.queue) == [0, 1, 2]  # back in arrival order
        assert statuses(answers) == [None, None, None]
        pool.up(0)
        for _ in range(3):
            await asyncio.sleep(PAST_ESTIMATE_S)
            pool.finish(0, 5.0)
        assert statuses(answers) == [200, 200, 200]
        assert router.dispatcher.in_flight() == 0 and not router.dispatcher.pending

        # A hang blames both (either may have caused it): at max_attempts both get a 502.
        router, pool = make_router(max_attempts=1)
        await router.start_workers()
        answers = admit(router, 2)
        await asyncio.sleep(PAST_ESTIMATE_S)
        assert pool.behind[0].qid == 1
        pool.down(0, blame=True)
        assert statuses(answers) == [502, 502]
        assert not router.driver.state.queue and not router.dispatcher.pending

    asyncio.run(main())


def test_a_drained_instance_stops_only_after_both_its_queries_are_answered() -> None:
    async def main() -> None:
        router, pool = make_router("r5n.large=1")
        await router.start_workers()
        answers = admit(router, 2)
        await asyncio.sleep(PAST_ESTIMATE_S)
        assert pool.behind[0].qid == 1
        changed = await router.dispatcher.resize(Pool.parse("g4dn.xlarge=1"))
        assert changed["removed"] == [0]
        pool.finish(0, 5.0)  # the released query's answer: one is still out
        await asyncio.sleep(0)
        assert pool.removed == [] and statuses(answers) == [200, None]
        pool.finish(0, 5.0)
        await asyncio.sleep(0)  # let the removal run
        assert pool.removed == [0] and statuses(answers) == [200, 200]

        # Released with nothing sent behind (the instance was draining): the same.
        router, pool = make_router("r5n.large=2")
        await router.start_workers()
        answers = admit(router, 3)  # 0 on instance 0, 1 on instance 1, 2 queued
        changed = await router.dispatcher.resize(Pool.parse("r5n.large=1"))
        (gone,) = changed["removed"]
        await asyncio.sleep(PAST_ESTIMATE_S)  # both released; 2 goes behind the kept one
        assert gone not in pool.behind and len(pool.behind) == 1
        pool.finish(gone, 5.0)
        await asyncio.sleep(0)
        assert pool.removed == [gone]
        while pool.in_flight:
            pool.finish(next(iter(pool.in_flight)), 5.0)
        assert statuses(answers) == [200, 200, 200]

    asyncio.run(main())
