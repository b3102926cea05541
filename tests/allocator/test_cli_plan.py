import json

import pytest

from kairos.cli.main import main

KEYS = {
    "model",
    "budget_per_hr",
    "qos_ms",
    "bound",
    "pool",
    "cost_per_hr",
    "upper_bound_qps",
    "ranked",
}


def run(capsys, *args):
    try:
        main(["plan", *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_output_has_the_documented_keys(capsys):
    code, out, _ = run(
        capsys, "--model", "dien", "--budget-per-hr", "2.5", "--top", "3", "--no-verify", "--json"
    )
    assert code == 0
    payload = json.loads(out)
    assert set(payload) >= KEYS
    assert payload["pool"] == "g4dn.xlarge=2,r5n.large=9"
    assert len(payload["ranked"]) == 3
    assert set(payload["ranked"][0]) == {"pool", "cost_per_hr", "upper_bound_qps"}
    assert "allowable_qps" not in payload and payload["ranking"] == "enumerated"


def test_default_plan_simulates_the_top_pools_and_reports_both_picks(capsys):
    args = ["--model", "rm2", "--budget-per-hr", "1.2", "--queries", "300", "--jobs", "1"]
    code, out, _ = run(capsys, *args, "--json")
    assert code == 0
    payload = json.loads(out)
    verified = [r for r in payload["ranked"] if "allowable_qps" in r]
    # the top 5 by the KAIROS bound and the top 5 by the fluid bound (the same pools or not)
    assert payload["explorations"] == len(verified) and 5 <= len(verified) <= 10
    assert payload["allowable_qps"] == max(r["allowable_qps"] for r in verified)
    assert payload["pool"] == verified[0]["pool"]
    bound_pick = payload["bound_pick"]
    assert bound_pick["upper_bound_qps"] == max(r["upper_bound_qps"] for r in payload["ranked"])
    code, out, _ = run(capsys, *args)
    assert code == 0
    assert (
        f"bound's pick:  {bound_pick['pool']}" in out and f"chosen pool:   {payload['pool']}" in out
    )


def test_verify_adds_allowable_throughput(capsys):
    code, out, _ = run(
        capsys,
        "--model",
        "rm2",
        "--budget-per-hr",
        "1.2",
        "--verify",
        "2",
        "--policy",
        "fcfs",
        "--queries",
        "300",
        "--top",
        "3",
        "--json",
    )
    assert code == 0
    payload = json.loads(out)
    assert all("allowable_qps" in r for r in payload["ranked"][:2])
    assert "allowable_qps" not in payload["ranked"][2]
    assert payload["allowable_qps"] == payload["ranked"][0]["allowable_qps"]


def test_table_output_and_caps(capsys):
    code, out, _ = run(
        capsys,
        "--model",
        "wnd",
        "--budget-per-hr",
        "2.5",
        "--max",
        "r5n.large=4",
        "--bound",
        "fluid",
        "--no-verify",
    )
    assert code == 0
    assert "chosen pool:" in out and "r5n.large=13" not in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--budget-per-hr", "-3"], "--budget-per-hr -3 is outside"),
        (["--budget-per-hr", "2", "--max", "zz.large=2"], "zz.large"),
        (["--budget-per-hr", "2", "--max", "r5n.large"], "TYPE=N"),
        (["--budget-per-hr", "0.1", "--model", "ncf"], "cheapest pool"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, args, needle):
    code, _, err = run(capsys, *args)
    assert code == 2
    assert needle in err and "To fix:" in err
    assert len(err.strip().splitlines()) == 1
