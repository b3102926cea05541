"""Tiny hand-checkable scenarios for the allocator tests."""

from __future__ import annotations

import numpy as np
import pytest

from kairos.catalog import PriceTable
from kairos.profiles import profiles_from_samples
from kairos.scenario import Scenario
from kairos.workload import BatchMix

PAPER_CAPS = {"g4dn.xlarge": 5, "c5n.2xlarge": 6, "r5n.large": 17, "t3.xlarge": 15}


def toy_scenario(
    latency_ms: dict[str, tuple[float, float]], prices: dict[str, float], qos_ms: float = 50.0
) -> Scenario:
    """Two batch classes (10 and 100, half each); every type's service time is constant."""
    samples = {}
    for t, (small, large) in latency_ms.items():
        samples[("toy", t, 10)] = [small, small]
        samples[("toy", t, 100)] = [large, large]
    profiles = profiles_from_samples(samples)
    mix = BatchMix("toy", np.array([10, 100]), np.array([0.5, 0.5]))
    return Scenario.build(
        "toy", qos_ms=qos_ms, profiles=profiles, prices=PriceTable(prices), mix=mix
    )


@pytest.fixture
def toy() -> Scenario:
    # G: the accelerator (base); K: serves only small queries within 50 ms; F: a second
    # accelerator, slower than G on large batches but within QoS on every batch.
    return toy_scenario(
        {"G": (10.0, 20.0), "K": (20.0, 200.0), "F": (15.0, 40.0)},
        {"G": 1.0, "K": 0.25, "F": 0.8},
    )
