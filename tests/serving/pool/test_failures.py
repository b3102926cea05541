"""Overload (503), draining on SIGTERM, and workers that die or hang mid-load (real processes)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kairos.aio import run_event_loop
from kairos.client.launch import RouterProcess, running_router, start_router
from kairos.client.loadgen import LoadSpec, run_load
from kairos.workload import fixed_mix, production_mix
from tests.serving.helpers import BODIES, call


def metric(router: RouterProcess, name: str) -> float:
    text = router.get("/metrics")[1]
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in /metrics")


def workers(router: RouterProcess) -> list[dict]:
    return json.loads(router.get("/v2/models/dien")[1])["parameters"]["workers"]


def test_overload_gets_503_with_retry_after_and_drain_answers_accepted_queries() -> None:
    # One r5n.large at real time: a batch of 1000 takes ~84 ms, so 12 at once overflow a
    # queue of 2.
    handle = start_router(
        ["--model", "dien", "--pool", "r5n.large=1", "--policy", "fcfs", "--max-queue", "2"],
        ready_timeout_s=60,
    )
    try:
        url = f"{handle.url}/v2/models/dien/infer"
        with ThreadPoolExecutor(12) as pool:
            replies = list(pool.map(lambda _: call(url, BODIES.body(1000)), range(12)))
        statuses = sorted(r.status for r in replies)
        assert set(statuses) == {200, 503}, statuses
        rejected = [r for r in replies if r.status == 503]
        assert all(int(r.headers["retry-after"]) >= 1 for r in rejected)
        assert "queue is full" in json.loads(rejected[0].text)["error"]
        assert metric(handle, "kairos_queries_rejected_total") == len(rejected)

        # Accepted queries are answered even though SIGTERM arrives while they wait.
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(call, url, BODIES.body(1000)) for _ in range(3)]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (
                metric(handle, "kairos_queue_length") + metric(handle, "kairos_in_flight_queries")
                < 3
            ):
                time.sleep(0.005)
            handle.proc.send_signal(signal.SIGTERM)
            drained = [f.result(timeout=30) for f in futures]
        assert [r.status for r in drained] == [200, 200, 200]
        assert handle.proc.wait(timeout=30) == 0
    finally:
        handle.stop()


@pytest.mark.slow
def test_worker_killed_or_hung_mid_load_loses_no_query() -> None:
    args = [
        "--model",
        "dien",
        "--pool",
        "r5n.large=3",
        "--policy",
        "fcfs",
        "--time-scale",
        "0.2",
        "--timeout-floor-s",
        "1.0",
        "--worker-hosting",  # a process per instance: the others must keep theirs
        "instance",
    ]
    with running_router(args, ready_timeout_s=60) as handle:
        before = [w["pid"] for w in workers(handle)]

        def sabotage() -> None:
            time.sleep(0.6)
            os.kill(before[0], signal.SIGKILL)  # dies mid-query
            time.sleep(0.4)
            os.kill(before[1], signal.SIGSTOP)  # hangs mid-query: only the timeout can tell

        killer = threading.Thread(target=sabotage)
        killer.start()
        spec = LoadSpec(handle.url, "dien", 40.0, 15.0, production_mix(), seed=3)
        report = run_event_loop(run_load(spec))
        killer.join()
        assert report.sent == report.completed, report.status_counts
        assert report.errors == 0 and report.rejected == 0
        assert metric(handle, "kairos_worker_failures_total") >= 2
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(w["up"] for w in workers(handle)):
            time.sleep(0.2)
        after = workers(handle)
        assert all(w["up"] for w in after)
        assert after[0]["pid"] != before[0] and after[1]["pid"] != before[1]
        assert after[2]["pid"] == before[2]
        # The restarted pool serves again.
        small = LoadSpec(handle.url, "dien", 20.0, 2.0, fixed_mix(100), seed=4)
        again = run_event_loop(run_load(small))
        assert again.completed == again.sent


@pytest.mark.slow
def test_cohosted_worker_process_killed_or_hung_restarts_all_its_instances_no_query_lost() -> None:
    args = [
        "--model",
        "dien",
        "--pool",
        "g4dn.xlarge=1,r5n.large=2",
        "--policy",
        "fcfs",
        "--time-scale",
        "0.2",
        "--worker-hosting",
        "type",
        "--timeout-floor-s",
        "1.0",
    ]
    with running_router(args, ready_timeout_s=60) as handle:
        before = [w["pid"] for w in workers(handle)]
        # One process per instance type: the two r5n.large instances share one.
        assert before[1] == before[2] and before[0] != before[1]

        def sabotage() -> None:
            time.sleep(0.6)
            os.kill(before[1], signal.SIGKILL)

        killer = threading.Thread(target=sabotage)
        killer.start()
        spec = LoadSpec(handle.url, "dien", 30.0, 8.0, production_mix(), seed=5)
        report = run_event_loop(run_load(spec))
        killer.join()
        assert report.sent == report.completed, report.status_counts
        assert metric(handle, "kairos_worker_failures_total") >= 2  # both hosted instances
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(w["up"] for w in workers(handle)):
            time.sleep(0.2)
        after = workers(handle)
        assert all(w["up"] for w in after)
        assert after[1]["pid"] == after[2]["pid"] != before[1]
        assert after[0]["pid"] == before[0]

        # A hung shared process: the instance whose query times out restarts the group once,
        # and its sibling is reported down and reconnects to the new process.
        os.kill(after[1]["pid"], signal.SIGSTOP)
        again = run_event_loop(run_load(replace(spec, duration_s=4.0, seed=6)))
        assert again.sent == again.completed, again.status_counts
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(w["up"] for w in workers(handle)):
            time.sleep(0.2)
        final = workers(handle)
        assert all(w["up"] for w in final)
        assert final[1]["pid"] == final[2]["pid"] not in (after[1]["pid"], before[1])
