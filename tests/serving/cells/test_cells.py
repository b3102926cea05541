"""``kairos serve --cells``: routers behind a real HAProxy on loopback, sharing one cell set.

Checked exactly: every query through the balancer is answered; a router killed under load
leaves no query unanswered (each gets 200, or a 503 the balancer counts) and its cell comes
back on the same address; the cells' weights follow their capacity; cells are resized, added
and drained; the aggregate metrics sum the cells. The parts that need no process (the
configuration, the error page, the metrics merge, bad command lines) are checked in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from kairos.aio import run_event_loop
from kairos.catalog import Pool
from kairos.cli.main import cli
from kairos.client.admin import http_request
from kairos.client.launch import running_router
from kairos.client.loadgen import NO_ANSWER, LoadSpec, run_load_records
from kairos.protocol.api import LISTEN_CELLS
from kairos.scenario import Scenario
from kairos.serving.cells.balancer import CELLS_PATH, CellServer, error_page, render
from kairos.serving.cells.cellset import capacity_qps
from kairos.serving.cells.config import CellSettings
from kairos.serving.cells.metrics import aggregate
from kairos.sim.celled import cut
from kairos.sim.cells import integer_weights
from kairos.workload import parse_mix
from tests.cli_runner import run

# Two cells of one instance each (one worker process each): cell 0 the g4dn.xlarge, cell 1 the
# r5n.large, so their weights differ.
POOL = "g4dn.xlarge=1,r5n.large=1"
HAVE_HAPROXY = shutil.which("haproxy") is not None
live = pytest.mark.skipif(
    not HAVE_HAPROXY, reason="HAProxy is not installed (apt-get install -y haproxy)"
)


def _scenario() -> Scenario:
    return Scenario.from_files("dien", mix=parse_mix("production"))


def _cells(url: str) -> dict:
    status, text = http_request(url + CELLS_PATH)
    assert status == 200, text
    return orjson.loads(text)


def _wait(url: str, ok, what: str, timeout_s: float = 90.0) -> dict:
    """The cell set's status once ``ok(status)`` holds (polled; bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        doc = _cells(url)
        if ok(doc):
            return doc
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s: {doc}"
        time.sleep(0.1)


def _all_up(n: int):
    return lambda d: (
        len(d["cells"]) == n
        and all(c["ready"] and c["balancer_status"] == "UP" for c in d["cells"])
    )


@pytest.fixture(scope="module")
def cells_url() -> Iterator[str]:
    args = ["--model", "dien", "--pool", POOL, "--cells", "2", "--time-scale", "1"]
    with running_router(args, listen=LISTEN_CELLS) as cells:
        _wait(cells.url, _all_up(2), "both cells up")
        yield cells.url


def _load(url: str, rate_qps: float, duration_s: float, seed: int):
    spec = LoadSpec(url, "dien", rate_qps, duration_s, parse_mix("production"), seed=seed)
    return run_event_loop(run_load_records(spec))


@live
def test_cells_split_the_pool_and_weigh_by_capacity(cells_url: str) -> None:
    doc = _wait(cells_url, _all_up(2), "both cells up")
    pools = [Pool.parse(c["pool"]) for c in doc["cells"]]
    scenario = _scenario()
    total: dict[str, int] = {}
    for p in pools:
        for t, n in p.counts:
            total[t] = total.get(t, 0) + n
    assert Pool.of(total) == Pool.parse(doc["pool"])
    caps = [capacity_qps(scenario, p) for p in pools]
    assert [c["weight"] for c in doc["cells"]] == list(integer_weights(caps))
    assert doc["cells"][0]["weight"] == 256 > doc["cells"][1]["weight"]
    assert doc["balancer"] == "haproxy"


@live
def test_every_query_through_the_balancer_is_answered(cells_url: str) -> None:
    before = _wait(cells_url, _all_up(2), "both cells up")
    report, records = _load(cells_url, 60.0, 1.5, seed=1)
    assert report.sent > 0
    assert report.completed == report.sent, report.status_counts
    after = _cells(cells_url)
    served = [
        a["sessions"] - b["sessions"] for a, b in zip(after["cells"], before["cells"], strict=True)
    ]
    # The balancer counts each request a cell served: every query, and the load generator's
    # one metadata request (the health checks are not sessions).
    assert sum(served) == report.sent + 1, served
    assert int((records.status == 200).sum()) == report.sent


def killed_under_load(
    url: str, kill: Callable[[dict[str, Any]], object]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Kill cell 0's router half a second into a load (``kill(victim)``, from a timer thread)
    and check what any kill must leave: no query unanswered, only 200s and 503s, the other
    cell serving, cell 0 back with one more restart and a new router process, every 503 one
    the balancer answered, and the cell serving again. Returns cell 0's row before the kill
    and once it is back (local and Ray routers differ in where they come back)."""
    before = _wait(url, _all_up(2), "both cells up")
    victim = before["cells"][0]
    threading.Timer(0.5, kill, (victim,)).start()
    report, records = _load(url, 60.0, 2.0, seed=2)
    statuses = set(np.unique(records.status).tolist())
    assert NO_ANSWER not in statuses
    assert statuses <= {200, 503}, report.status_counts
    assert _cells(url)["cells"][1]["sessions"] > before["cells"][1]["sessions"]
    after = _wait(
        url,
        lambda d: _all_up(2)(d) and d["cells"][0]["restarts"] == victim["restarts"] + 1,
        "the killed cell back",
    )
    back = after["cells"][0]
    assert back["pid"] != victim["pid"]
    # Every 503 the client got is one the balancer answered (no cell could), none silent.
    assert int((records.status == 503).sum()) == after["responses_5xx"] - before["responses_5xx"]
    # The cell serves again.
    report2, _ = _load(url, 40.0, 1.0, seed=3)
    assert report2.completed == report2.sent > 0
    assert _cells(url)["cells"][0]["sessions"] > back["sessions"]
    return victim, back


@live
def test_a_router_killed_under_load_loses_no_query_and_its_cell_comes_back(
    cells_url: str,
) -> None:
    victim, back = killed_under_load(cells_url, lambda cell: os.kill(cell["pid"], signal.SIGKILL))
    assert back["url"] == victim["url"]  # a local router comes back on its port


@live
def test_scale_a_cell_add_a_cell_and_drain_it(cells_url: str) -> None:
    _wait(cells_url, _all_up(2), "both cells up")
    runner = CliRunner()
    original = _cells(cells_url)["cells"][1]["pool"]
    grown = "g4dn.xlarge=1,r5n.large=1"
    out = runner.invoke(cli, ["scale", "--url", cells_url, "--cell", "1", "--pool", grown])
    assert out.exit_code == 0, out.output
    doc = _wait(cells_url, lambda d: d["cells"][1]["pool"] == grown, "cell 1 resized")
    assert doc["cells"][0]["weight"] < doc["cells"][1]["weight"] == 256
    out = runner.invoke(cli, ["scale", "--url", cells_url, "--cell", "1", "--pool", original])
    assert out.exit_code == 0, out.output

    out = runner.invoke(cli, ["scale", "--url", cells_url, "--cells", "3", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == {"cells": 3, "added": [2], "removed": []}
    three = _wait(cells_url, _all_up(3), "three cells up")
    assert three["cells"][2]["pool"] == three["cells"][0]["pool"]
    report, _ = _load(cells_url, 40.0, 1.0, seed=4)
    assert report.completed == report.sent > 0
    out = runner.invoke(cli, ["scale", "--url", cells_url, "--cells", "2", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == {"cells": 2, "added": [], "removed": [2]}
    assert [c["cell"] for c in _wait(cells_url, _all_up(2), "two cells")["cells"]] == [0, 1]

    shown = runner.invoke(cli, ["status", "--url", cells_url])
    assert shown.exit_code == 0, shown.output
    assert "cells:   2 behind" in shown.output and "UP" in shown.output


@live
def test_metrics_of_every_cell_and_their_sum(cells_url: str) -> None:
    _wait(cells_url, _all_up(2), "both cells up")
    status, text = http_request(cells_url + "/metrics")
    assert status == 200
    assert 'kairos_cell_up{cell="0"} 1' in text and 'kairos_cell_up{cell="1"} 1' in text
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("kairos_workers_up{"):
            values[line.split("}")[0] + "}"] = float(line.split()[-1])
    cells = [v for k, v in values.items() if 'cell="all"' not in k]
    assert len(cells) == 2 and values['kairos_workers_up{cell="all"}'] == sum(cells)


# -- in-process: no router, no HAProxy --------------------------------------------------


def test_config_weighs_checks_retries_and_routes_admin(tmp_path: Path) -> None:
    settings = CellSettings()
    servers = [
        CellServer("cell0", "127.0.0.1", 9001, 256),
        CellServer("cell1", "10.0.0.2", 9002, 7),
    ]
    text = render(settings, ("0.0.0.0", 8000), servers, ("127.0.0.1", 9100), tmp_path, None)
    lines = [ln.strip() for ln in text.splitlines()]
    assert "bind 0.0.0.0:8000" in lines
    assert "balance leastconn" in lines
    assert "option httpchk GET /v2/health/ready" in lines
    assert "retries 1" in lines and "option redispatch 1" in lines
    assert "retry-on conn-failure empty-response 503" in lines
    assert "option http-buffer-request" in lines
    assert "http-reuse always" in lines  # idle connections to the routers serve any request
    # Up cells checked every 2 s, down or changing ones every 250 ms.
    assert any("check inter 2000ms fastinter 250ms downinter 250ms" in ln for ln in lines)
    assert any(ln.startswith("server cell0 127.0.0.1:9001 weight 256 check") for ln in lines)
    assert any(ln.startswith("server cell1 10.0.0.2:9002 weight 7 check") for ln in lines)
    assert "server admin 127.0.0.1:9100" in lines
    assert not any(ln.startswith("stats socket") for ln in lines)  # a user's balancer: none
    random = render(
        CellSettings(balance="weighted-random"), ("127.0.0.1", 1), servers, ("h", 2), tmp_path, None
    )
    assert "    balance random(1)" in random.splitlines()


def test_every_error_page_is_a_503_with_a_json_error() -> None:
    for status in (502, 503, 504):
        head, body = error_page(status).split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 503 ")
        assert f"Content-Length: {len(body)}".encode() in head
        assert "retry" in orjson.loads(body)["error"]


def test_metrics_merge_family_by_family_and_sum_what_adds_up() -> None:
    one = "# HELP q Queue.\n# TYPE q gauge\nq 2.0\n"
    one += "# TYPE kairos_plan_utilisation gauge\nkairos_plan_utilisation 0.5\n"
    two = "# HELP q Queue.\n# TYPE q gauge\nq 3.0\n"
    text = aggregate([("0", one), ("1", two), ("2", None)])
    lines = text.splitlines()
    assert lines.count("# TYPE q gauge") == 1
    assert 'q{cell="0"} 2.0' in lines and 'q{cell="1"} 3.0' in lines
    assert 'q{cell="all"} 5.0' in lines
    assert 'kairos_cell_up{cell="2"} 0' in lines
    assert 'kairos_plan_utilisation{cell="0"} 0.5' in lines
    assert not any(ln.startswith('kairos_plan_utilisation{cell="all"') for ln in lines)


def test_the_split_keeps_every_instance() -> None:
    scenario = _scenario()
    pools = cut(scenario, Pool.parse("g4dn.xlarge=2,r5n.large=2"), 2)
    assert [str(p) for p in pools] == ["g4dn.xlarge=1,r5n.large=1"] * 2
    assert [str(p) for p in cut(scenario, Pool.parse(POOL), 2)] == ["g4dn.xlarge=1", "r5n.large=1"]


def _refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, _, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "To fix: " in lines[0], err
    return lines[0]


def test_bad_cell_command_lines_say_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = ("serve", "--model", "dien", "--pool", POOL)
    assert "no --cells was given" in _refused(capsys, *base, "--balancer-config", "x.cfg")
    assert "cell count 9 exceeds the pool's 2 instances" in _refused(capsys, *base, "--cells", "9")
    line = _refused(capsys, *base, "--cells", "2", "--autoscale", "kairos")
    assert "--cells does not run with --autoscale" in line
    line = _refused(capsys, *base, "--cells", "2", "--detach")
    assert "--cells does not run with --detach" in line
    workers = "127.0.0.1:9001,127.0.0.1:9002"
    line = _refused(capsys, *base, "--cells", "2", "--workers", workers)
    assert "--workers addresses are not supported with cells" in line
    line = _refused(capsys, "scale", "--cells", "2", "--pool", POOL)
    assert "--cell K with --pool P, or --cells N alone" in line
    monkeypatch.setattr("kairos.serving.cells.balancer.shutil.which", lambda name: None)
    assert "apt-get install -y haproxy" in _refused(capsys, *base, "--cells", "2")
