"""Bad command lines, one test per class: each gets exit status 2 and one line that names the
value and ends with a "To fix:" hint, before any work starts (scripts/bad_inputs.py runs
~200 of them as subprocesses)."""

from __future__ import annotations

import pytest

from kairos.cli import compare as compare_cli
from kairos.cli import demo as demo_cli
from kairos.cli.common import PlainProgress
from kairos.limits import MAX_POOL_INSTANCES
from tests.cli_runner import run


def refused(capsys, *argv: str) -> str:
    code, _, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "To fix: " in lines[0], err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["simulate", "--rate-qps", "1e9"], "--rate-qps 1e+09 is outside"),
        (["simulate", "--rate-qps", "nan"], "--rate-qps nan is not a finite number"),
        (["simulate", "--rate-qps", "5", "--queries", "10000000000000"], "--queries 10000"),
        (["simulate", "--rate-qps", "5", "--seed", "-1"], "--seed -1 is outside"),
        (["capacity", "--precision", "0"], "--precision 0 is outside"),
        (["plan", "--budget-per-hr", "1e308"], "--budget-per-hr 1e+308 is outside"),
        (["plan", "--budget-per-hr", "2", "--top", "0"], "--top 0 is outside"),
        (["compare", "--budget-per-hr", "2,1e308"], "--budget-per-hr 1e+308 is outside"),
        (["compare", "--budget-per-hr", "2", "--top-k", "0"], "--top-k 0 is outside"),
        (["compare", "--budget-per-hr", "2", "--model", ""], "--model '' names nothing"),
        (["serve", "--port", "70000"], "--port 70000 is outside"),
        (["serve", "--max-queue", "0"], "--max-queue 0 is outside"),
        (["serve", "--drain-timeout-s", "-1"], "--drain-timeout-s -1 is outside"),
        (["serve", "--drain-timeout-s", "0"], "--drain-timeout-s 0 is outside"),
        (["serve", "--time-scale", "inf"], "--time-scale inf is not a finite number"),
        (["loadgen", "--model", "dien", "--rate-qps", "0"], "--rate-qps 0 is outside"),
        (["loadgen", "--model", "dien", "--rate-qps", "1", "--duration-s", "0"], "--duration-s"),
        (
            ["worker", "--instance-type", "r5n.large", "--model", "dien", "--port", "70000"],
            "--port 70000 is outside its range",
        ),
    ],
)
def test_numbers_outside_their_documented_range(capsys, argv, needle):
    assert needle in refused(capsys, *argv)


def test_sizes_that_would_exhaust_memory_are_refused_before_allocating(capsys):
    line = refused(capsys, "simulate", "--rate-qps", "5", "--pool", "g4dn.xlarge=100000000")
    assert f"cap of {MAX_POOL_INSTANCES:,}" in line
    line = refused(
        capsys, "loadgen", "--model", "dien", "--rate-qps", "1e6", "--duration-s", "3600"
    )
    assert "3,600,000,000 queries" in line and "cap" in line


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["simulate", "--bogus"], "kairos simulate: No such option '--bogus'"),
        (["simulate", "--rate-qps"], "requires an argument"),
        (["simulate", "--rate-qps", "abc"], "'abc' is not a valid float"),
        (["plan", "--budget-per-hr", "2", "--bound", "nope"], "'nope' is not one of"),
        (["nosuchcommand"], "No such command"),
        (["simulate", "extra"], "unexpected extra argument"),
    ],
)
def test_click_usage_errors_have_the_one_line_form(capsys, argv, needle):
    line = refused(capsys, *argv)
    assert needle in line and "--help" in line


def test_scale_without_a_pool_names_both_ways_to_give_one(capsys):
    # --pool is no longer a click-required option (--cells N resizes cells instead): the
    # refusal is the house's one line with its fix.
    line = refused(capsys, "scale")
    assert "kairos scale needs --pool" in line and "--cells N" in line and "To fix:" in line


def test_outputs_are_checked_before_any_work(capsys, tmp_path, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("work started before the output path was checked")

    monkeypatch.setattr(compare_cli, "run_comparisons", no_work)
    monkeypatch.setattr(demo_cli, "run_comparisons", no_work)
    base = ["compare", "--budget-per-hr", "2"]
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert "cannot write" in refused(capsys, *base, "--plot", "/proc/nope/x.png")
    assert "cannot write" in refused(capsys, *base, "--plot", f"{a_file}/x.png")
    assert "is a folder" in refused(capsys, *base, "--plot", str(tmp_path))
    assert ".pdf" in refused(capsys, *base, "--report", str(tmp_path / "out.pdf"))
    assert "'.txt'" in refused(capsys, *base, "--plot", str(tmp_path / "out.txt"))
    assert "is a file, not a folder" in refused(capsys, "demo", "--out", str(a_file))
    assert "cannot write" in refused(capsys, "demo", "--out", "/proc/nope")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--pool", "g4dn.xlarge=1,g4dn.xlarge=2"], "twice"),
        (["--trace", "t.csv"], "both set the arrivals"),
        (["--batch-mix", "fixed:5000"], "above the largest batch 1000"),
        (
            ["--policy", "kairos", "--policy-option", "safeguard_frac=abc"],
            "safeguard_frac='abc' is text; it takes a finite number",
        ),
        (["--policy", "kairos", "--policy-option", "bogus=1"], "has no option 'bogus'"),
    ],
)
def test_what_was_accepted_silently_is_now_refused(capsys, write, argv, needle):
    write("t.csv", "arrival_s,batch_size\n0.1,10\n")
    argv = [a.replace("t.csv", str(write("t.csv", "arrival_s,batch_size\n0.1,10\n"))) for a in argv]
    assert needle in refused(capsys, "simulate", "--rate-qps", "5", *argv)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--autoscaler", "kairos", "--tick-s", "0"], "--tick-s 0 is outside"),
        (["--autoscaler", "kairos", "--min-charge-s", "1e9"], "--min-charge-s 1e+09 is outside"),
        (["--autoscaler", "kairos", "--boot-s", "abc"], "--boot-s 'abc' is not S or TYPE=S"),
        (["--autoscaler", "kairos", "--boot-s", "-5"], "--boot-s '-5': -5 is outside"),
        (["--autoscaler", "kairos", "--boot-s", "90,g4dn.xlarge=nan"], "nan is not a finite"),
        (["--autoscaler", "kairos", "--plot", "out.txt"], "'.txt' is not one Kairos writes"),
        (["--autoscaler", "nope"], "autoscaler 'nope' is not known"),
        (["--autoscaler", "kairos", "--pool", "g4dn.xlarge=1"], "both set the pool"),
        (["--tick-s", "10"], "--tick-s applies to an autoscaled replay"),
        (["--plot", "out.png"], "--plot applies to an autoscaled replay"),
        (["--budget-per-hr", "0"], "--budget-per-hr 0 is outside"),
    ],
)
def test_autoscaled_replays_refuse_bad_settings(capsys, write, argv, needle):
    trace = write("t.csv", "arrival_s,batch_size\n0.1,10\n")
    assert needle in refused(capsys, "simulate", "--trace", str(trace), *argv)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["diurnal", "--peak-qps", "0"], "--peak-qps 0 is outside"),
        (["step", "--peak-qps", "50", "--trough-qps", "100"], "above --peak-qps 50"),
        (["diurnal", "--noise", "2"], "--noise 2 is outside"),
        (["spike", "--duration-s", "60", "--at-s", "90"], "--at-s 90 is not within the trace"),
        (["diurnal", "--duration-s", "1e9"], "--duration-s 1e+09 is outside"),
        (["sawtooth"], "'sawtooth' is not one of"),
        (["diurnal", "--peak-qps", "1e6", "--duration-s", "86400"], "above the cap"),
    ],
)
def test_trace_refuses_bad_shapes(capsys, tmp_path, argv, needle):
    assert needle in refused(capsys, "trace", *argv, "--out", str(tmp_path / "t.csv"))


def test_bad_trace_files_are_one_line(capsys, write):
    for text, needle in [
        ("arrival_s,batch_size\n2,10\n1,10\n", "earlier than the previous row"),
        ("arrival_s,batch_size\n-1,10\n", "arrival_s '-1' is outside"),
        ("arrival_s,batch_size\n", "has a header but no rows"),
        ("arrival_s\ninf\n", "arrival_s 'inf' is not a finite number"),
    ]:
        trace = write("bad.csv", text)
        assert needle in refused(capsys, "simulate", "--trace", str(trace))


def test_a_batch_mix_above_the_grid_is_refused_by_every_command(capsys):
    for argv in (
        ["capacity"],
        ["plan", "--budget-per-hr", "2"],
        ["compare", "--budget-per-hr", "2"],
        ["serve"],
    ):
        assert "above the largest batch" in refused(capsys, *argv, "--batch-mix", "fixed:5000")


def test_a_folder_given_as_a_file_and_a_bad_host_are_named(capsys, tmp_path):
    assert "is a folder, not a file" in refused(
        capsys, "simulate", "--rate-qps", "5", "--profiles", str(tmp_path)
    )
    line = refused(capsys, "serve", "--host", "nope.invalid")
    assert "'nope.invalid' does not resolve" in line and "port" not in line
    line = refused(capsys, "serve", "--host", "192.0.2.1")  # TEST-NET-1: never local
    assert "not an address of this machine" in line


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal(capsys):
    code, _, err = run(
        capsys, "capacity", "--pool", "g4dn.xlarge=1", "--queries", "500", "--precision", "0.1"
    )
    assert code == 0
    assert err.startswith("capacity search: 1 done")
    progress = PlainProgress("work", total=3, every_s=3600)
    for _ in range(3):
        progress.update()
    progress.close()
    lines = capsys.readouterr().err.splitlines()
    assert [ln.split(",")[0] for ln in lines] == ["work: 1/3 done", "work: 3/3 done"]


def test_tables_have_legends(capsys):
    # --no-verify: the same table and legend (the allowable column shows '-'), without
    # simulating five pools first (about 5 s of CPU that this check does not read).
    code, out, _ = run(capsys, "plan", "--budget-per-hr", "1.5", "--top", "2", "--no-verify")
    assert code == 0 and "upper_bound_qps: the kairos upper bound" in out
    code, out, _ = run(
        capsys,
        "compare",
        "--budget-per-hr",
        "1.5",
        "--schemes",
        "kairos,homogeneous",
        "--queries",
        "300",
        "--precision",
        "0.2",
    )
    assert code == 0
    for column in ("fluid bound qps", "pools tried", "x oracle", "x homogeneous"):
        assert f"  {column}: " in out
