"""Shared fixtures: the built-in data (loaded once) and tiny hand-made profile files."""

from __future__ import annotations

from pathlib import Path

import pytest

from kairos.catalog import PriceTable
from kairos.profiles import ProfileSet, default_profiles, profiles_from_samples
from kairos.scenario import Scenario
from kairos.workload import fixed_mix


@pytest.fixture(scope="session")
def builtin_profiles() -> ProfileSet:
    return default_profiles()


def constant_profiles(latency_ms: dict[str, float], model: str = "toy") -> ProfileSet:
    """Each type takes exactly ``latency_ms[type] * batch / 10`` ms at batch 10..1000."""
    samples = {(model, t, b): [ms * b / 10.0] for t, ms in latency_ms.items() for b in (10, 1000)}
    return profiles_from_samples(samples)


@pytest.fixture
def toy_scenario() -> Scenario:
    """One type 'fast' taking exactly 10 ms at batch 10, QoS 40 ms, fixed batch 10."""
    return Scenario.build(
        "toy",
        qos_ms=40.0,
        profiles=constant_profiles({"fast": 10.0}),
        prices=PriceTable({"fast": 1.0}),
        mix=fixed_mix(10),
    )


@pytest.fixture
def write(tmp_path: Path):
    def _write(name: str, text: str) -> Path:
        p = tmp_path / name
        p.write_text(text)
        return p

    return _write
