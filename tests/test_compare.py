"""Scheme wiring on a tiny synthetic catalog where the best pool is known by hand.

Types: 'gpu' takes 2 + 0.05 b ms, 'cpu' takes 1.5 b ms (b = batch size); prices 1.0 and 0.1
$/h; QoS 30 ms, so a cpu can serve batch 10 (15 ms) but not batch 100 (150 ms). Mix: 70% batch
10, 30% batch 100. Budget $1.5/h. Fluid reasoning: one gpu alone serves 1000 / (0.7*2.5 +
0.3*7) = 260 qps; with the gpu serving every large query (7 ms each) the pool tops out at
1000 / (0.3 * 7) = 476 qps, which needs the 333 qps of small queries on cpus at 66.7 qps each:
5 cpus. gpu=1,cpu=4 reaches only about 434 (the paper's bound: 381 + 260 (1 - 114/143)), and a
cpu-only pool can never meet QoS. The best pool is gpu=1,cpu=5 ($1.5/h).
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from kairos.catalog import Pool, PriceTable
from kairos.cli.main import main
from kairos.compare import TARGET_SCHEMES, CompareSettings, compare, compare_for_rate
from kairos.errors import ConfigError
from kairos.profiles import profiles_from_samples
from kairos.scenario import Scenario
from kairos.sim.capacity import CapacityJob, Measurer, run_job
from kairos.sim.parallel import Parallelism, make_executor
from kairos.workload import BatchMix

LATENCY = {"gpu": lambda b: 2 + 0.05 * b, "cpu": lambda b: 1.5 * b}


def toy_profile_csv(tmp_path):
    path = tmp_path / "profiles.csv"
    rows = ["model,instance_type,batch_size,latency_ms"]
    for t, f in LATENCY.items():
        for b in (10, 100, 1000):
            rows += [f"toy,{t},{b},{f(b) * s:.4f}" for s in (0.95, 1.0, 1.05)]
    path.write_text("\n".join(rows) + "\n")
    prices = tmp_path / "prices.csv"
    prices.write_text("instance_type,price_per_hr\ngpu,1.0\ncpu,0.1\n")
    mix = tmp_path / "mix.csv"
    mix.write_text("batch_size,weight\n10,0.7\n100,0.3\n")
    return path, prices, mix


@pytest.fixture
def toy():
    samples = {
        ("toy", t, b): [f(b) * s for s in (0.95, 1.0, 1.05)]
        for t, f in LATENCY.items()
        for b in (10, 100, 1000)
    }
    return Scenario.build(
        "toy",
        qos_ms=30.0,
        profiles=profiles_from_samples(samples),
        prices=PriceTable({"gpu": 1.0, "cpu": 0.1}),
        mix=BatchMix("toy", np.array([10, 100]), np.array([0.7, 0.3])),
    )


SMALL = CompareSettings(
    queries=1500, precision=0.05, top_k=4, ribbon_max_explorations=8, cdf_queries=1000
)


def test_schemes_pick_the_known_pools(toy):
    c = compare(toy, 1.5, SMALL)
    assert [s.name for s in c.schemes] == list(SMALL.schemes)
    kairos = c.scheme("kairos")
    assert str(kairos.pool) == "gpu=1,cpu=5"
    assert kairos.explorations == 0 and kairos.policy == "kairos"
    assert str(c.scheme("kairos-fluid").pool) == "gpu=1,cpu=5"
    homo = c.scheme("homogeneous")
    assert str(homo.pool) == "gpu=1" and homo.policy == "fcfs"
    assert c.ratio("kairos", "homogeneous") > 1.3
    assert kairos.upper_bound_qps == pytest.approx(476, rel=0.05)
    assert kairos.allowable_qps <= kairos.upper_bound_qps
    assert c.scheme("oracle").allowable_qps >= 0.9 * kairos.allowable_qps
    assert all(s.cost_per_hr <= 1.5 + 1e-9 for s in c.schemes)
    assert c.cdf_rate_qps == pytest.approx(homo.allowable_qps)
    assert set(c.latency_ms) == set(SMALL.schemes)


def test_cli_json_plot_and_report(tmp_path, capsys):
    profiles, prices, mix = toy_profile_csv(tmp_path)
    plot = tmp_path / "out" / "cmp.png"
    report = tmp_path / "out" / "report.md"
    argv = [
        "compare",
        "--model",
        "toy",
        "--budget-per-hr",
        "1.5",
        "--qos-ms",
        "30",
        "--profiles",
        str(profiles),
        "--prices",
        str(prices),
        "--batch-mix",
        str(mix),
        "--queries",
        "1000",
        "--precision",
        "0.05",
        "--top-k",
        "3",
        "--schemes",
        "kairos,homogeneous,oracle",
        "--seed",
        "3",
        "--json",
        "--plot",
        str(plot),
        "--report",
        str(report),
    ]
    main(argv)
    data = json.loads(capsys.readouterr().out)
    assert {"model", "budget_per_hr", "qos_ms", "schemes"} <= set(data)
    assert [s["name"] for s in data["schemes"]] == ["kairos", "homogeneous", "oracle"]
    for s in data["schemes"]:
        assert set(s) >= {
            "name",
            "pool",
            "policy",
            "cost_per_hr",
            "allowable_qps",
            "explorations",
            "upper_bound_qps",
        }
    for png in (plot, plot.with_name("cmp_cdf.png")):
        head = png.read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", head[16:24])
        assert width > 100 and height > 100
    text = report.read_text()
    for needle in (
        "toy",
        "1.5",
        "30",
        str(profiles),
        str(prices),
        str(mix),
        "1000",
        "0.05",
        "seed",
        "`3`",
        "cmp.png",
        "kairos,homogeneous,oracle",
    ):
        assert needle in text, needle


def test_sensitivity_lists_produce_one_comparison_each(tmp_path, capsys):
    profiles, prices, mix = toy_profile_csv(tmp_path)
    main(
        [
            "compare",
            "--model",
            "toy",
            "--budget-per-hr",
            "1.2,2",
            "--qos-ms",
            "30",
            "--profiles",
            str(profiles),
            "--prices",
            str(prices),
            "--batch-mix",
            str(mix),
            "--queries",
            "500",
            "--precision",
            "0.1",
            "--schemes",
            "kairos,homogeneous",
            "--json",
            "--plot",
            str(tmp_path / "s.png"),
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert [c["budget_per_hr"] for c in data["comparisons"]] == [1.2, 2.0]
    assert (tmp_path / "s.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--budget-per-hr", "-1"], "--budget-per-hr -1 is outside"),
        (["--budget-per-hr", "2", "--schemes", "magic"], "magic"),
        (["--budget-per-hr", "2", "--qos-ms", "0"], "--qos-ms 0 is outside"),
        (["--budget-per-hr", "2", "--queries", "5"], "--queries 5 is outside"),
        (["--budget-per-hr", "2", "--jobs", "0"], "jobs 0"),
        ([], "exactly one of --budget-per-hr and --target-qps"),
        (["--budget-per-hr", "2", "--target-qps", "50"], "exactly one of"),
        (["--target-qps", "0"], "--target-qps 0 is outside"),
        (["--target-qps", "50", "--schemes", "oracle"], "target-mode scheme 'oracle'"),
    ],
)
def test_bad_input(capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        main(["compare", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "To fix:" in err


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"schemes": ("bogus",)}, "scheme 'bogus' is not known"),
        ({"schemes": ()}, "no scheme"),
        ({"schemes": "oracle"}, "one string"),
        ({"top_k": 0}, "top_k=0"),
        ({"precision": 1.5}, "precision 1.5"),
    ],
)
def test_settings_reject_bad_values_where_they_enter(values, needle):
    with pytest.raises(ConfigError, match=needle) as exc:
        CompareSettings(**values)
    assert "To fix:" in str(exc.value)


def test_unknown_bound_is_a_config_error_in_the_library(toy):
    from kairos.allocator import plan

    with pytest.raises(ConfigError, match="bound 'exact' is not known") as exc:
        plan(toy, 1.5, bound="exact")
    assert "--bound" in exc.value.fix


def test_parallel_compare_equals_serial(toy):
    """Same seed, same numbers: two worker processes against this process alone."""
    settings = CompareSettings(
        queries=400,
        precision=0.1,
        top_k=3,
        schemes=("kairos", "homogeneous", "oracle"),
        cdf_queries=200,
    )
    serial = compare(toy, 1.5, settings)
    with make_executor(Parallelism(jobs=2)) as executor:
        parallel = compare(toy, 1.5, settings, measurer=Measurer(executor))
    assert parallel.as_dict() == serial.as_dict()
    assert parallel.cdf_rate_qps == serial.cdf_rate_qps
    # The latency-CDF runs go to the workers too: the same seeded simulations.
    assert set(parallel.latency_ms) == set(serial.latency_ms)
    for name, lat in serial.latency_ms.items():
        np.testing.assert_array_equal(parallel.latency_ms[name], lat)


def holds(scenario, pool, policy, rate, settings=SMALL) -> bool:
    """One trial at ``rate`` (the test every target-mode scheme applies) meets QoS."""
    job = CapacityJob(scenario, pool, policy, settings.measurement, screen_qps=rate)
    return run_job(job).allowable_qps >= rate


def test_at_a_target_rate_each_scheme_pays_for_a_pool_that_holds_it(toy):
    rate = 300.0  # one gpu alone serves ~260 q/s of the toy mix at best
    c = compare_for_rate(toy, rate, SMALL)
    assert [s.name for s in c.schemes] == list(TARGET_SCHEMES.names())
    assert c.target_qps == rate and c.budget_per_hr is None
    for s in c.schemes:
        assert holds(toy, s.pool, s.policy, rate), s.name
        assert s.allowable_qps >= rate
    kairos, homo = c.scheme("kairos"), c.scheme("homogeneous")
    assert kairos.cost_per_hr < homo.cost_per_hr and c.cost_ratio("kairos", "homogeneous") < 1
    assert len(homo.pool.types) == 1 and homo.policy == "fcfs"
    # Both are the cheapest of their pool space: one instance less no longer holds the rate.
    assert not holds(toy, Pool.of({"gpu": homo.pool.count("gpu") - 1}), "fcfs", rate)
    smaller = Pool.of({"gpu": 1, "cpu": kairos.pool.count("cpu") - 1})
    assert kairos.pool.count("gpu") == 1 and not holds(toy, smaller, "kairos", rate)
    assert c.cdf_rate_qps == rate and set(c.latency_ms) == set(TARGET_SCHEMES.names())


def test_cli_target_rate_json_and_report(tmp_path, capsys):
    profiles, prices, mix = toy_profile_csv(tmp_path)
    report = tmp_path / "t.md"
    data_args = ["--profiles", str(profiles), "--prices", str(prices), "--batch-mix", str(mix)]
    argv = [
        "compare",
        "--model",
        "toy",
        "--qos-ms",
        "30",
        *data_args,
        "--queries",
        "500",
        "--precision",
        "0.1",
        "--schemes",
        "kairos,homogeneous",
        "--target-qps",
        "150,300",
        "--json",
        "--report",
        str(report),
    ]
    main(argv)
    data = json.loads(capsys.readouterr().out)
    assert [c["target_qps"] for c in data["comparisons"]] == [150.0, 300.0]
    for c in data["comparisons"]:
        assert "budget_per_hr" not in c
        costs = {s["name"]: s["cost_per_hr"] for s in c["schemes"]}
        assert costs["kairos"] <= costs["homogeneous"]
        assert all(s["allowable_qps"] >= c["target_qps"] for s in c["schemes"])
    text = report.read_text()
    assert "target 300 q/s" in text and "x homogeneous $/h" in text and "t.png" in text
