"""One worker record: ``WorkerSpec.argv`` is a command line that ``kairos worker`` parses back
into the same spec, so the supervisor and the profiler's probe start exactly what it says."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from kairos.cli import worker as worker_cli
from kairos.serving.worker.launch import WorkerSpec


def _parsed(args: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[WorkerSpec, int]:
    got: list[tuple[WorkerSpec, int]] = []
    monkeypatch.setattr(worker_cli, "run_worker", lambda spec, n: got.append((spec, n)))
    assert args[:3] == [sys.executable, "-m", "kairos.cli.worker"]
    result = CliRunner().invoke(worker_cli.worker, args[3:], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (parsed,) = got
    return parsed


@pytest.mark.parametrize(
    "spec",
    [
        WorkerSpec("r5n.large", "dien"),
        WorkerSpec(
            "local.half",
            "ncf",
            mode="model",
            handler="mypkg.models:predict",
            time_scale=0.25,
            seed=1003,
            profiles_path="/tmp/p.csv",
            transport="grpc",
            host="127.0.0.2",
            port=7001,
            cpus=(0, 2),
            local_type="none",
            threads=2,
            parent_pid=4242,
        ),
    ],
)
def test_argv_parses_back_into_the_same_spec(
    spec: WorkerSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _parsed(spec.argv(), monkeypatch) == (spec, 1)


def test_argv_co_hosts_instances(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = WorkerSpec("r5n.large", "dien", seed=7)
    assert _parsed(spec.argv(3), monkeypatch) == (spec, 3)


def test_the_worker_command_defaults_are_the_specs() -> None:
    # ``kairos worker`` declares no default of its own: each option's is the spec's field.
    defaults = WorkerSpec("", "")
    params = {p.name: p.default for p in worker_cli.worker.params}
    for name in ("host", "port", "mode", "time_scale", "seed", "transport", "local_type"):
        assert params[name] == getattr(defaults, name), name
