"""Ray settings are checked like every other router setting, and the package works (with a
clear error for --backend ray) where Ray is not installed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kairos.catalog import Pool
from kairos.errors import ConfigError
from kairos.serving.router.config import RouterConfig
from kairos.serving.settings import PoolSettings, RaySettings

RAY = PoolSettings(backend="ray")


def config(**overrides: object) -> RouterConfig:
    base: dict[str, object] = {"model": "dien", "pool": Pool.parse("r5n.large=2,g4dn.xlarge=1")}
    return RouterConfig(**(base | overrides))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"ray": RaySettings(address="127.0.0.1:6379")}, "add --backend ray"),
        (
            {"workers": PoolSettings(backend="ray", addresses=("a:1", "b:2", "c:3"))},
            "drop --workers",
        ),
        (
            {"workers": RAY, "ray": RaySettings(placement="label")},
            "one kairos.io/instance-type label",
        ),
        ({"workers": RAY, "ray": RaySettings(placement="rack")}, "Ray placement 'rack'"),
        ({"workers": RAY, "ray": RaySettings(start_timeout_s=0.0)}, "Ray start timeout"),
        ({"workers": RAY, "ray": RaySettings(max_restarts=-2)}, "max restarts >= -1"),
    ],
)
def test_ray_settings_errors_name_the_setting(overrides: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as err:
        config(**overrides).check()
    assert "To fix:" in str(err.value)


def test_label_placement_on_a_cluster_or_one_type_is_fine() -> None:
    config(workers=RAY, ray=RaySettings(placement="label", address="auto")).check()
    label = RaySettings(placement="label")
    config(workers=RAY, ray=label, pool=Pool.parse("r5n.large=2")).check()


def test_detach_needs_a_cluster() -> None:
    from kairos.scenario import Scenario
    from kairos.serving.ray.router import start_detached

    with pytest.raises(ConfigError, match="--detach runs the router inside a Ray cluster"):
        start_detached(config(workers=RAY), Scenario.build("dien"))


WITHOUT_RAY = """
import json, sys
sys.modules["ray"] = None  # as if Ray were not installed
from kairos.cli.main import main
for argv in json.loads(sys.argv[1]):  # each as its own 'kairos ARGV': its exit status, then a mark
    try:
        main(argv)
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    for stream in (sys.stdout, sys.stderr):
        print(f"{END}{status}", file=stream, flush=True)
"""
END = "@@end-of-command@@ "


def test_without_ray_the_package_works_and_the_ray_backend_says_how_to_install_it() -> None:
    # Both commands in one interpreter without Ray: a second one cost seconds of start-up.
    commands = [
        ["serve", "--help"],
        ["serve", "--model", "dien", "--pool", "r5n.large=1", "--backend", "ray"],
    ]
    script = WITHOUT_RAY.replace("{END}", END)
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    stderrs = done.stderr.split(END)
    statuses = [int(part.split("\n", 1)[0]) for part in stderrs[1:]]
    assert statuses == [0, 2], done.stderr
    assert [int(p.split("\n", 1)[0]) for p in done.stdout.split(END)[1:]] == statuses
    failed_stderr = stderrs[1].split("\n", 1)[1]
    assert "needs Ray" in failed_stderr and "pip install 'kairos[ray]'" in failed_stderr
    assert "Traceback" not in done.stderr


def test_a_ray_address_where_nothing_listens_fails_at_once() -> None:
    import socket

    from kairos.errors import RuntimeServiceError
    from kairos.serving.ray.session import probe_address

    with socket.socket() as s:  # a port that was free a moment ago and has no listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RuntimeServiceError, match="nothing answers at the Ray address"):
        probe_address(f"127.0.0.1:{port}")
    with socket.socket() as s:  # one that listens passes
        s.bind(("127.0.0.1", 0))
        s.listen()
        probe_address(f"127.0.0.1:{s.getsockname()[1]}")
