"""Profiling: warm-up dropped, each run timed, the profiles CSV written or merged."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from kairos.errors import ConfigError, ProfileError
from kairos.profiles import load_profiles
from kairos.profiling.profiler import (
    ProfileSettings,
    merge_price_csv,
    merge_profiles_csv,
    parse_batch_sizes,
    profile_handler,
)
from kairos.serving.worker import handlers
from kairos.serving.worker.handlers import ModelHandler
from tests.cli_runner import run


class FakeClock:
    """``time`` for the handler's timing, with a ``perf_counter`` only the model moves."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def perf_counter(self) -> float:
        return self.now_s

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


class Counting:
    """A model that counts its calls and takes longer for larger batches (on ``clock``, when
    given, exactly 1 ms per row; the wall clock is up to the host)."""

    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.calls: list[int] = []
        self.clock = clock

    def __call__(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        x = arrays["x"]
        self.calls.append(len(x))
        if self.clock is not None:
            self.clock.now_s += len(x) / 1000.0
        for _ in range(len(x)):  # work that grows with the batch
            np.linalg.norm(x)
        return x.sum(axis=1, keepdims=True)


def test_profile_drops_warmup_and_times_every_run(monkeypatch: pytest.MonkeyPatch) -> None:
    # The handler's clock is injected: a wall-clock comparison of a 2-row and a 200-row run
    # (well under a millisecond apart) is up to the host's scheduler.
    clock = FakeClock()
    monkeypatch.setattr(handlers, "time", clock)
    model = Counting(clock)
    lines: list[str] = []
    settings = ProfileSettings(batch_sizes=(2, 200), runs=5, warmup=3)
    prof = profile_handler(ModelHandler(model), "toy", "here", settings, lines.append)
    assert model.calls == [2] * 8 + [200] * 8
    assert [b.batch_size for b in prof.batches] == [2, 200]
    assert all(len(b.total_ms) == 5 for b in prof.batches)
    for b in prof.batches:
        assert np.all(b.prepare_ms + b.infer_ms <= b.total_ms)
    for b, ms in zip(prof.batches, (2.0, 200.0), strict=True):  # the model's time, each run
        assert b.infer_ms == pytest.approx([ms] * 5) and b.total_ms == pytest.approx([ms] * 5)
    assert prof.batches[1].total_ms.mean() > prof.batches[0].total_ms.mean()
    assert len(lines) == 2 and "batch 200 (2/2), 5 runs" in lines[1]
    assert len(prof.rows()) == 10


def test_merge_keeps_other_types_and_replaces_the_profiled_one(tmp_path: Path) -> None:
    out = tmp_path / "profiles.csv"
    handler = ModelHandler(Counting())
    settings = ProfileSettings(batch_sizes=(1, 10), runs=3, warmup=0)
    a = profile_handler(handler, "toy", "a", settings)
    b = profile_handler(handler, "toy", "b", settings)
    assert "wrote 6 rows of toy on a" in merge_profiles_csv(out, a)
    assert "(6 other rows kept)" in merge_profiles_csv(out, b)
    again = profile_handler(handler, "toy", "a", ProfileSettings(batch_sizes=(1,), runs=2))
    assert "replaced the 6 earlier rows of toy on a" in merge_profiles_csv(out, again)
    loaded = load_profiles(out).model("toy")
    assert set(loaded.instance_types) == {"a", "b"}
    assert loaded.get("a").max_batch == 1 and loaded.get("b").max_batch == 10
    bad = tmp_path / "bad.csv"
    bad.write_text("model,instance_type\nx,y\n")
    with pytest.raises(ProfileError):
        merge_profiles_csv(bad, a)
    assert bad.read_text() == "model,instance_type\nx,y\n"  # not overwritten


def test_settings_and_prices_are_checked(tmp_path: Path) -> None:
    assert parse_batch_sizes("100, 1,10,10") == (1, 10, 100)
    for text in ("1,x", "1-10"):
        with pytest.raises(ConfigError, match="--batch-sizes"):
            parse_batch_sizes(text)
    for kwargs in ({"batch_sizes": (0,)}, {"batch_sizes": (20_000,)}, {"runs": 0}, {"warmup": -1}):
        with pytest.raises(ConfigError):
            ProfileSettings(**kwargs)
    prices = tmp_path / "prices.csv"
    merge_price_csv(prices, "local.half", 0.055)
    merge_price_csv(prices, "local.full", 0.1)
    merge_price_csv(prices, "local.half", 0.06)
    assert prices.read_text().splitlines() == [
        "instance_type,price_per_hr",
        "local.half,0.06",
        "local.full,0.1",
    ]


def test_profile_command_measures_a_built_in_model(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "p.csv"
    code, stdout, err = run(
        capsys,
        "profile",
        "--model",
        "ncf",
        "--instance-type",
        "here",
        "--batch-sizes",
        "1,50",
        "--runs",
        "4",
        "--warmup",
        "1",
        "--out",
        str(out),
        "--local-type",
        "none",
        "--json",
    )
    assert code == 0, err
    doc = json.loads(stdout)
    assert [b["batch_size"] for b in doc["batches"]] == ["1", "50"]
    assert float(doc["batches"][0]["infer_p50_ms"]) > 0
    assert "wrote 8 rows of ncf on here" in err
    assert "KAIROS_WORKER_READY" not in err  # the worker's ready line is the probe's alone
    assert load_profiles(out).get("ncf", "here").max_batch == 50


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--batch-sizes", "a"], "--batch-sizes"),
        (["--out", "/proc/nope/p.csv"], "not a writable directory"),
        (["--prices-out", "x.csv"], "--price-per-hr"),
        (["--model", "bert"], "--handler"),
        (["--local-type", "local.huge"], "local instance type 'local.huge' is not known"),
    ],
)
def test_profile_command_refuses_bad_input_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, extra: list[str], needle: str
) -> None:
    base = {"--model": "ncf", "--instance-type": "here", "--out": str(tmp_path / "p.csv")}
    for k in range(0, len(extra), 2):
        base[extra[k]] = extra[k + 1]
    args = [x for kv in base.items() for x in kv]
    code, _, err = run(
        capsys, "profile", *args, "--runs", "1", "--batch-sizes", base.get("--batch-sizes", "1")
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "To fix:" in lines[0]
    assert not (tmp_path / "p.csv").exists()


def test_profile_command_reports_a_worker_that_fails_to_start(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(
        capsys,
        "profile",
        "--model",
        "mine",
        "--instance-type",
        "here",
        "--handler",
        "no_such_module:predict",
        "--batch-sizes",
        "1",
        "--out",
        str(tmp_path / "p.csv"),
    )
    assert code == 2
    *worker_lines, last = err.strip().splitlines()
    assert any("No module named 'no_such_module'" in line for line in worker_lines)
    assert "did not become ready (exit status 2)" in last and "To fix:" in last
