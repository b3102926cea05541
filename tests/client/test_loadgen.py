"""``kairos loadgen`` against real routers: its exit status follows its check, a router that
goes away mid-run is reported (every query counted), and a mix the router would refuse is
refused before anything is sent."""

from __future__ import annotations

import signal
import threading

import pytest

from kairos.client.launch import RouterProcess, running_router, start_router
from tests.cli_runner import run


def table(out: str) -> dict[str, str]:
    rows = [line.split(None, 1) for line in out.splitlines()[2:] if line.strip()]
    return {k: v.strip() for k, v in rows}


@pytest.fixture(scope="module")
def cpu_router():
    # rm2 on r5n.large takes ~6 ms at batch 10 and ~404 ms at batch 1000 (profiled p1-p99
    # within 2%): with QoS 200 ms the first always passes, even with the machine's hiccups,
    # and the second always fails. Real time: a scaled clock would scale hiccups too.
    with running_router(["--model", "rm2", "--pool", "r5n.large=2", "--qos-ms", "200"]) as r:
        yield r


def test_exit_status_follows_the_check(capsys, cpu_router: RouterProcess) -> None:
    base = ["loadgen", "--url", cpu_router.url, "--model", "rm2", "--duration-s", "2"]
    code, out, err = run(capsys, *base, "--rate-qps", "20", "--batch-mix", "fixed:10")
    assert code == 0 and table(out)["passed"] == "True" and err == ""
    code, out, err = run(capsys, *base, "--rate-qps", "2", "--batch-mix", "fixed:1000")
    assert code == 1 and table(out)["passed"] == "False"
    (line,) = err.strip().splitlines()
    assert line.startswith("error: the run failed: 0.00% of") and "To fix:" in line


def test_a_mix_the_router_refuses_is_refused_before_sending(capsys, cpu_router) -> None:
    code, out, err = run(
        capsys,
        "loadgen",
        "--url",
        cpu_router.url,
        "--model",
        "rm2",
        "--rate-qps",
        "10",
        "--batch-mix",
        "fixed:5000",
    )
    assert code == 2 and out == "" and "above the largest batch 1000" in err


def test_a_router_killed_mid_run_is_reported_not_a_crash(capsys) -> None:
    router = start_router(["--model", "dien", "--pool", "g4dn.xlarge=1,r5n.large=2"])
    killer = threading.Timer(1.5, router.proc.send_signal, (signal.SIGKILL,))
    killer.start()
    try:
        code, out, err = run(
            capsys,
            "loadgen",
            "--url",
            router.url,
            "--model",
            "dien",
            "--rate-qps",
            "40",
            "--duration-s",
            "3",
        )
    finally:
        killer.cancel()
        router.stop(grace_s=5)
    assert code == 1 and "Traceback" not in err
    counts = table(out)
    assert int(counts["sent"]) == 120
    assert int(counts["completed"]) + int(counts["errors"]) + int(counts["rejected"]) == 120
    assert 0 < int(counts["no_answer"]) == int(counts["errors"])
    assert "no_answer" in counts["status_counts"]


def test_a_trace_is_replayed_open_loop_and_every_query_counted(capsys, cpu_router, tmp_path):
    # 20 queries over 0.95 s; arrival times only, so batches come from --batch-mix.
    trace = tmp_path / "trace.csv"
    trace.write_text("arrival_s\n" + "".join(f"{0.05 * i:.2f}\n" for i in range(20)))
    base = ["loadgen", "--url", cpu_router.url, "--model", "rm2", "--trace", str(trace)]
    code, out, err = run(capsys, *base, "--batch-mix", "fixed:10")
    report = table(out)
    assert code == 0 and err == "", err
    assert (report["sent"], report["completed"], report["errors"]) == ("20", "20", "0")
    assert report["measured"] == "20"  # a trace has no warm-up: every query is judged
    assert report["rate_qps"] == f"{20 / 0.95:.4g}"  # the table prints 4 digits
    # --duration-s replays the first seconds only: arrivals before 0.5 s, 10 of them.
    code, out, _ = run(capsys, *base, "--batch-mix", "fixed:10", "--duration-s", "0.5")
    assert code == 0 and table(out)["sent"] == "10"


def test_a_trace_and_a_rate_are_refused_together(capsys, cpu_router, tmp_path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("arrival_s,batch_size\n0.0,10\n")
    base = ["loadgen", "--url", cpu_router.url, "--model", "rm2", "--trace", str(trace)]
    code, out, err = run(capsys, *base, "--rate-qps", "5")
    assert code == 2 and out == ""
    assert "--rate-qps and --trace both set the load" in err and "To fix:" in err
