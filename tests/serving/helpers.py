"""Helpers for tests that start real routers and workers on loopback."""

from __future__ import annotations

import time
from dataclasses import dataclass

from kairos.client.http import request
from kairos.client.loadgen import BodyFactory
from kairos.serving.worker.stand_in import StandInDlrm

BODIES = BodyFactory(StandInDlrm().inputs, seed=0)


@dataclass(frozen=True)
class Reply:
    status: int
    text: str
    headers: dict[str, str]  # names lower-cased


def call(
    url: str,
    body: bytes | None = None,
    token: str | None = None,
    timeout_s: float = 30.0,
    json_length: int | None = None,
) -> Reply:
    """A request; ``json_length`` sends ``body`` in the binary tensor data extension."""
    headers = {"Content-Type": "application/json"}
    if json_length is not None:
        headers = {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(json_length),
        }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = request(url, body, headers, timeout_s)
    return Reply(response.status, response.text, response.headers)


def double_handler(inputs: dict) -> dict:
    """A user model for ``--handler tests.serving.helpers:double_handler``."""
    return {"doubled": inputs["x"] * 2}


double_handler.inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]  # type: ignore[attr-defined]


def slow_double_handler(inputs: dict) -> dict:
    """``double_handler`` that takes 0.2 s: far past any profiled service time of the tests'
    types, so a router with --pipeline always has a query running past its estimate."""
    time.sleep(0.2)
    return {"doubled": inputs["x"] * 2}


slow_double_handler.inputs = double_handler.inputs  # type: ignore[attr-defined]


def cpu_idle_share(window_s: float) -> float:
    """The machine's idle CPU share over ``window_s`` (from /proc/stat: idle + iowait)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)

    idle0, total0 = sample()
    time.sleep(window_s)
    idle1, total1 = sample()
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_for_quiet_cpu(
    min_idle: float = 0.6, window_s: float = 1.0, timeout_s: float = 30.0
) -> float:
    """Wait (at most ``timeout_s``) until the CPUs are mostly idle, and return the last idle
    share. Near-capacity comparisons with the simulator need the CPU the run assumes: a cluster
    or a router that has just started keeps importing and spawning for seconds after it says it
    is up, and that shows as queueing the simulator never had. Not an assertion: on a machine
    that stays busy the test runs anyway, after the timeout."""
    deadline = time.monotonic() + timeout_s
    share = cpu_idle_share(window_s)
    while share < min_idle and time.monotonic() < deadline:
        share = cpu_idle_share(window_s)
    return share
