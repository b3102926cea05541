"""Router settings and the serve/loadgen command lines reject bad input with a fix hint."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from kairos.catalog import Pool
from kairos.cli.common import WORKERS
from kairos.cli.main import cli
from kairos.cli.serve import _parse_workers
from kairos.errors import ConfigError
from kairos.serving.pool.supervisor import group_instances
from kairos.serving.router.config import RouterConfig
from kairos.serving.settings import DispatchSettings, HttpSettings, PoolSettings
from kairos.serving.worker.launch import WorkerSpec


def config(**overrides: object) -> RouterConfig:
    base: dict[str, object] = {"model": "dien", "pool": Pool.parse("r5n.large=2")}
    return RouterConfig(**(base | overrides))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"http": HttpSettings(max_queue=0)}, "--max-queue"),
        ({"dispatch": DispatchSettings(time_scale=-1.0)}, "--time-scale"),
        (
            {"workers": PoolSettings(addresses=("127.0.0.1:1",))},
            "1 worker addresses for a pool of 2",
        ),
        ({"workers": PoolSettings(transport="http3")}, "transport 'http3'"),
        ({"dispatch": DispatchSettings(timeout_floor_s=0.0)}, "--timeout-floor-s"),
        ({"http": HttpSettings(api_token="")}, "--api-token is empty"),
        ({"workers": PoolSettings(hosting="core")}, "worker hosting 'core'"),
        ({"dispatch": DispatchSettings(overhead_factor=-1.0)}, "--overhead-factor"),
        ({"dispatch": DispatchSettings(overhead_quantile=1.0)}, "overhead quantile"),
        ({"workers": PoolSettings(backend="k8s")}, "pool backend 'k8s'"),
        ({"workers": PoolSettings(connect_timeout_s=0.0)}, "--connect-timeout-s"),
        ({"log_format": "xml"}, "log format 'xml'"),
    ],
)
def test_router_config_errors_name_the_setting(overrides: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as err:
        config(**overrides).check()
    assert "To fix:" in str(err.value)


def test_workers_option_parses_local_and_addresses() -> None:
    assert _parse_workers("local") is None
    assert _parse_workers("127.0.0.1:7001, 127.0.0.1:7002") == ("127.0.0.1:7001", "127.0.0.1:7002")
    # The option's type checks the text before _parse_workers splits it.
    with pytest.raises(ConfigError, match="HOST:PORT"):
        WORKERS.convert("127.0.0.1", None, None)


def test_loadgen_without_rate_or_search_is_a_usage_error() -> None:
    from kairos.cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(["loadgen", "--model", "dien"])
    assert exit_.value.code == 2


def test_serve_help_lists_the_protocol_options() -> None:
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--workers", "--max-queue", "--api-token", "--transport", "--time-scale"):
        assert option in result.output


def test_type_hosting_groups_runs_of_same_type_replay_instances_with_their_own_seeds() -> None:
    types = ["g4dn.xlarge", "g4dn.xlarge", "r5n.large", "r5n.large", "r5n.large"]
    specs = [WorkerSpec(t, "dien", seed=1000 + j) for j, t in enumerate(types)]
    assert group_instances(specs, "instance") == [[0], [1], [2], [3], [4]]
    assert group_instances(specs, "type") == [[0, 1], [2, 3, 4]]
    # Real models keep a process each: their compute needs its own core.
    model = [WorkerSpec(t, "dien", mode="model", seed=j) for j, t in enumerate(types)]
    assert group_instances(model, "type") == [[0], [1], [2], [3], [4]]


def test_worker_refuses_to_cohost_a_real_model() -> None:
    from kairos.cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "worker",
                "--instance-type",
                "r5n.large",
                "--model",
                "dien",
                "--mode",
                "model",
                "--instances",
                "2",
            ]
        )
    assert exit_.value.code == 2


def test_cpu_lists_parse_and_unavailable_cores_are_refused() -> None:
    from kairos.aio import parse_cpus, pin_to_cpus

    assert parse_cpus(None) == () and parse_cpus(" ") == ()
    assert parse_cpus("2, 0,2") == (0, 2)
    with pytest.raises(ConfigError, match="not comma-separated"):
        parse_cpus("0-1")
    with pytest.raises(ConfigError, match=r"cores \[4096\] are not available"):
        pin_to_cpus((4096,))


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs two usable cores",
)
def test_router_and_local_workers_are_pinned_to_their_cores() -> None:
    import json

    from kairos.client.launch import running_router

    first, second = sorted(os.sched_getaffinity(0))[:2]
    args = [
        "--model",
        "dien",
        "--pool",
        "r5n.large=2",
        "--router-cpus",
        str(first),
        "--worker-cpus",
        str(second),
    ]
    with running_router(args, ready_timeout_s=60) as handle:
        doc = json.loads(handle.get("/v2/models/dien")[1])
        pids = {w["pid"] for w in doc["parameters"]["workers"]}
        assert os.sched_getaffinity(handle.proc.pid) == {first}
        assert all(os.sched_getaffinity(pid) == {second} for pid in pids)


def test_router_tells_the_policy_its_measured_transport_overhead() -> None:
    from kairos.scenario import Scenario
    from kairos.serving.router.dispatcher import OVERHEAD_REFRESH
    from kairos.serving.router.router import Router

    half = DispatchSettings(time_scale=0.5)
    router = Router(config(policy="kairos", dispatch=half), Scenario.build("dien"))
    assert router.driver.state.overhead_s == 0.0
    for k in range(OVERHEAD_REFRESH):
        router.dispatcher.overheads.note(0.001 if k % 2 else 0.002)
    # 3 x the p95 of the window (0.002 s wall), in the policy's clock (wall / time scale).
    assert router.driver.state.overhead_s == pytest.approx(3 * 0.002 / 0.5)
    no_overhead = DispatchSettings(overhead_factor=0.0)
    off = Router(config(policy="kairos", dispatch=no_overhead), Scenario.build("dien"))
    for _ in range(OVERHEAD_REFRESH):
        off.dispatcher.overheads.note(0.002)
    assert off.driver.state.overhead_s == 0.0


def test_serve_on_a_port_in_use_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from kairos.cli.main import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exit_:
            main(["serve", "--model", "dien", "--pool", "r5n.large=1", "--port", str(port)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "To fix:" in err


def serve_config(monkeypatch: pytest.MonkeyPatch, *args: str) -> RouterConfig:
    """The config ``kairos serve ARGS`` would run a router with."""
    import kairos.serving.router.router as router_module

    seen: list[RouterConfig] = []

    async def run_router(cfg: RouterConfig, *_: object, **__: object) -> None:
        seen.append(cfg)

    monkeypatch.setattr(router_module, "run_router", run_router)
    result = CliRunner().invoke(cli, ["serve", "--model", "dien", "--pool", "r5n.large=2", *args])
    assert result.exit_code == 0, result.output
    (cfg,) = seen
    return cfg


def test_serve_defaults_are_the_declared_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert serve_config(monkeypatch) == config()


def test_serve_gives_each_part_its_own_options(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = serve_config(
        monkeypatch,
        *("--policy", "fcfs", "--seed", "5", "--log-format", "json", "--router-cpus", "0"),
        *("--port", "0", "--api-token", "t", "--max-queue", "7", "--max-body-bytes", "2048"),
        *("--time-scale", "0.5", "--max-attempts", "2", "--timeout-floor-s", "1.5"),
        *("--overhead-factor", "0", "--traffic-window-s", "30", "--drain-timeout-s", "4"),
        *("--workers", "127.0.0.1:7001,127.0.0.1:7002", "--transport", "grpc"),
        *("--mode", "model", "--worker-hosting", "instance", "--worker-cpus", "1"),
    )
    assert cfg == config(
        policy="fcfs",
        seed=5,
        log_format="json",
        router_cpus=(0,),
        http=HttpSettings(port=0, api_token="t", max_queue=7, max_body_bytes=2048),
        dispatch=DispatchSettings(
            time_scale=0.5,
            max_attempts=2,
            timeout_floor_s=1.5,
            overhead_factor=0.0,
            traffic_window_s=30.0,
            drain_timeout_s=4.0,
        ),
        workers=PoolSettings(
            addresses=("127.0.0.1:7001", "127.0.0.1:7002"),
            transport="grpc",
            mode="model",
            hosting="instance",
            cpus=(1,),
        ),
    )
