"""Workers started on their own (as on separate machines) and named with --workers ADDR,..."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from kairos.client.launch import running_router
from kairos.errors import RuntimeServiceError
from kairos.serving.worker.service import READY_LINE
from tests.serving.helpers import BODIES, call


@contextmanager
def remote_workers(*instance_types: str) -> Iterator[list[str]]:
    """``kairos worker`` per type, each in its own process as an operator would start it;
    yields their HOST:PORTs. All are started before any is waited for: their start-ups
    overlap instead of adding up."""
    procs = []
    try:
        for instance_type in instance_types:
            cmd = [sys.executable, "-m", "kairos", "worker", "--instance-type", instance_type]
            cmd += ["--model", "dien", "--port", "0", "--time-scale", "0.05"]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
        addresses = []
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith(READY_LINE), line
            addresses.append(f"127.0.0.1:{line.split('port=')[1].strip()}")
        yield addresses
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def test_router_serves_through_workers_it_did_not_start() -> None:
    with remote_workers("g4dn.xlarge", "r5n.large") as (gpu, cpu):
        args = [
            "--model",
            "dien",
            "--pool",
            "g4dn.xlarge=1,r5n.large=1",
            "--workers",
            f"{gpu},{cpu}",
            "--time-scale",
            "0.05",
        ]
        with running_router(args, ready_timeout_s=60) as router:
            meta = json.loads(router.get("/v2/models/dien")[1])["parameters"]["workers"]
            assert [(w["address"], w["up"]) for w in meta] == [(gpu, True), (cpu, True)]
            for batch in (5, 900):
                reply = call(f"{router.url}/v2/models/dien/infer", BODIES.body(batch))
                assert reply.status == 200, reply.text
                assert json.loads(reply.text)["outputs"][0]["shape"] == [batch, 1]


def test_workers_listed_out_of_pool_order_are_refused() -> None:
    with remote_workers("g4dn.xlarge", "r5n.large") as (gpu, cpu):
        args = [
            "--model",
            "dien",
            "--pool",
            "g4dn.xlarge=1,r5n.large=1",
            "--workers",
            f"{cpu},{gpu}",
        ]
        with (
            pytest.raises(RuntimeServiceError, match="exited with status 2 before it was ready"),
            running_router(args, ready_timeout_s=60),
        ):
            pass
