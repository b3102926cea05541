"""``kairos serve --autoscale kairos --backend ray`` on the test cluster: a burst of load makes
the autoscaler grow the pool and the idle time after it shrink it, both through the Ray pool's
resize, and no query is lost.

The kairos autoscaler decides on the rates it observes, which hang on wall-clock timing, so
the test does not fix which pools it picks; it checks exactly what follows from whatever it
picked: the first move is up and a later one down; every move is one log line, and the
moves' count is ``kairos_control_moves_total``; the pool the router rents at the end is the
last move's, instance for instance in ``kairos_control_target_instances`` and in the admin
view; every instance of it is up on a node of its type; every instance a move removed is
``removed`` and its actor's process is gone; every query was answered 200 (none rejected,
none unanswered), and the router counts exactly those. The move up comes while queries
wait in the queue; the move down comes after the load (its resize drains a busy instance
under load in test_ray_pool.py's scale test, through the same path).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from kairos.catalog import Pool
from kairos.client.admin import http_request
from kairos.client.launch import running_router
from kairos.scenario import Scenario
from tests.serving.ray.helpers import (
    RayTestCluster,
    admin_pool,
    assert_none_lost,
    load_while,
    metric,
    wait_gone,
    wait_until_up,
)

MODEL = "rm2"
START = "r5n.large=1"
TIME_SCALE = 0.02  # 50 profile seconds a wall second: kairos's 120 s scale-down delay fits
RATE_QPS = 14.0  # profile q/s: more than START holds for rm2, so the first move is up
DURATION_S = 40.0  # profile seconds: 0.8 s of wall time, 560 queries
WAIT_MOVE_S = 30.0  # wall seconds the test waits for a move, at most

MOVE = re.compile(r"autoscale t=([\d.]+)s: (\S+) -> (\S+) \((.+)\)$", re.M)


def cost(pool: str) -> float:
    return Pool.parse(pool).cost_per_hr(Scenario.build(MODEL).prices)


def labelled(url: str, name: str) -> dict[str, float]:
    """A labelled series of the router's /metrics, by its one label's value."""
    status, text = http_request(url + "/metrics")
    assert status == 200
    found = re.findall(rf'^{name}\{{[a-z_]+="([^"]+)"\}} (\S+)$', text, re.M)
    return {label: float(value) for label, value in found}


@dataclass(frozen=True)
class Settled:
    """One consistent look at the router once its pool has settled: the moves logged, the
    moves counted, the target gauges and the admin view."""

    moves: list[tuple[str, str, str, str]]
    moves_total: float
    targets: dict[str, float]
    listing: dict[str, Any]


def settled(url: str, capfd: pytest.CaptureFixture[str]) -> Settled:
    """The router seen once no move is under way: the moves counted before and after the look
    agree with the lines logged, every instance kept is up and none still drains (a further
    move down may come at any tick: then it looks again)."""
    log = ""
    deadline = time.monotonic() + WAIT_MOVE_S
    while True:
        before = metric(url, "kairos_control_moves_total")
        log += capfd.readouterr().err  # a move's line is out before it is counted
        look = Settled(
            MOVE.findall(log),
            metric(url, "kairos_control_moves_total"),
            labelled(url, "kairos_control_target_instances"),
            admin_pool(url),
        )
        states = [w["state"] for w in look.listing["workers"]]
        if (
            before == look.moves_total == len(look.moves)
            and "draining" not in states
            and "down" not in states
        ):
            return look
        assert time.monotonic() < deadline, (look, states)
        time.sleep(0.1)


def test_autoscale_moves_through_the_ray_pool_and_loses_nothing(
    ray_cluster: RayTestCluster, capfd: pytest.CaptureFixture[str]
) -> None:
    args = ["--model", MODEL, "--pool", START, "--autoscale", "kairos", "--seed", "5"]
    args += ["--backend", "ray", "--address", ray_cluster.address]
    args += ["--time-scale", str(TIME_SCALE), "--boot-s", "20", "--max-queue", "100000"]
    with running_router(args, ready_timeout_s=120) as router:
        url = router.url
        wait_until_up(url, 1)
        costs = [cost(START)]  # of the pool rented, as the admin view shows it

        def look_until(done: Callable[[], bool]) -> None:
            deadline = time.monotonic() + WAIT_MOVE_S
            while time.monotonic() < deadline and not done():
                time.sleep(0.05)
                costs.append(cost(admin_pool(url)["pool"]))

        # The move up while the load runs, then a move down once it is over.
        report = load_while(
            url,
            MODEL,
            lambda: look_until(lambda: costs[-1] > costs[0]),
            rate_qps=RATE_QPS,
            duration_s=DURATION_S,
            seed=7,
        )
        assert costs[-1] > costs[0], "the pool never grew"
        look_until(lambda: costs[-1] < max(costs))
        assert costs[-1] < max(costs), "the pool never shrank after the load"
        look = settled(url, capfd)
        completed = labelled(url, "kairos_queries_completed_total")
    # No query lost: each answered 200, and the router counts exactly those answers.
    assert_none_lost(report)
    assert sum(completed.values()) == report.completed
    # Every move is one log line (time, from, to, why), and /metrics counts them.
    moves = look.moves
    assert len(moves) >= 2 and look.moves_total == len(moves), look
    assert all(float(t) > 0 and "target" in why for t, _, _, why in moves)
    assert [a for _, a, _, _ in moves[1:]] == [b for _, _, b, _ in moves[:-1]]
    assert moves[0][1] == START and cost(moves[0][2]) > cost(START)  # the first move is up
    assert any(cost(b) < cost(a) for _, a, b, _ in moves[1:])  # and a later one down
    # The pool rented at the end is the last move's: in the gauges and the admin view.
    final = Pool.parse(moves[-1][2]).as_dict()
    assert {t: n for t, n in look.targets.items() if n} == final, look.targets
    assert Pool.parse(look.listing["pool"]).as_dict() == final
    rows = look.listing["workers"]
    kept = [w for w in rows if w["state"] != "removed"]
    assert Counter(w["instance_type"] for w in kept) == final
    # Each instance a move added was placed by Ray on a node of its type and came up; each
    # one a move removed was drained, and its actor is gone.
    added = sum(sum(max(0, n) for n in delta(a, b).values()) for _, a, b, _ in moves)
    removed = sum(sum(max(0, -n) for n in delta(a, b).values()) for _, a, b, _ in moves)
    assert len(rows) == Pool.parse(START).size + added, rows
    assert len(rows) - len(kept) == removed, rows
    for w in kept:
        assert w["state"] == "up" and w["node"] in ray_cluster.node_ids(w["instance_type"]), w
    for w in rows:
        if w["state"] == "removed":
            wait_gone(w["pid"])


def delta(a: str, b: str) -> dict[str, int]:
    """Instances of each type the move from pool ``a`` to pool ``b`` adds (or removes: < 0)."""
    before, after = Pool.parse(a).as_dict(), Pool.parse(b).as_dict()
    return {t: after.get(t, 0) - before.get(t, 0) for t in {*before, *after}}
