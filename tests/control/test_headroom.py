"""The headroom watch: the fluid bound at once, the simulated allowable throughput after a
search in another process, and a new search when the observed mix moves."""

from __future__ import annotations

import time

import numpy as np
import pytest

from kairos.catalog import Pool
from kairos.control.headroom import PlanWatch, total_variation
from kairos.scenario import Scenario
from kairos.serving.router.traffic import TrafficWindow
from kairos.workload import fixed_mix, production_mix


def test_total_variation_of_mixes() -> None:
    assert total_variation(fixed_mix(10), fixed_mix(10)) == 0.0
    assert total_variation(fixed_mix(10), fixed_mix(20)) == 1.0


def test_plan_watch_gives_bound_then_simulated_allowable_and_follows_the_mix() -> None:
    scenario = Scenario.build("dien")
    pool = Pool.parse("g4dn.xlarge=1,r5n.large=2")
    watch = PlanWatch(scenario, "kairos", lambda: pool)
    try:
        window = TrafficWindow(60.0)
        rng = np.random.default_rng(0)
        for k, b in enumerate(production_mix().sample(500, rng)):
            window.note(k * 0.01, int(b))
        head = watch.update(window.snapshot(5.0))
        assert head is not None and head.bound_qps > 0 and head.allowable_qps is None
        deadline = time.monotonic() + 60
        while watch.headroom.allowable_qps is None and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.1)
        first = watch.headroom
        assert first is not None and first.allowable_qps is not None
        assert 0 < first.allowable_qps <= first.bound_qps * 1.05
        assert first.utilisation(50.0) == pytest.approx(50.0 / first.allowable_qps)
        # Larger batches: the bound falls and a new search starts.
        for k in range(2000):
            window.note(5.0 + k * 0.01, 900)
        moved = watch.update(window.snapshot(25.0))
        assert moved is not None and moved.bound_qps < first.bound_qps
    finally:
        watch.close()
