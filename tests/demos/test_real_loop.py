"""The whole loop on real compute, short: profile a real model on two local types, plan on
those profiles, serve the planned pool with real workers, search its live capacity."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kairos.catalog import load_prices
from kairos.demos.real import format_summary, quick_settings, run_real_loop
from kairos.profiles import load_profiles


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_profile_plan_serve_and_measure_a_real_model(tmp_path: Path) -> None:
    settings = quick_settings("ncf")
    lines: list[str] = []
    result = run_real_loop(settings, tmp_path, lines.append)

    profiles = load_profiles(result.profiles_path).model("ncf")
    assert set(profiles.instance_types) == set(settings.types)
    for t in settings.types:
        assert tuple(profiles.get(t).batch_sizes) == settings.batch_sizes
    assert set(load_prices(result.prices_path).instance_types) == set(settings.types)

    assert set(result.pool.types) <= set(settings.types)
    assert 0 < result.cost_per_hr <= settings.budget_per_hr
    (kairos,) = result.policies
    assert kairos.simulated_qps > 0, lines
    assert kairos.live.trials, "no live trial ran"
    for trial in kairos.live.trials:  # every query sent was answered by a real model
        assert trial.errors == 0 and trial.rejected == 0 and trial.completed == trial.sent
        assert trial.status_counts == {"200": trial.sent}
    # How the live capacity compares with the simulator's is a timing figure: it lives in
    # benchmarks/bench_models.py, not here (a busy host can fail every trial's QoS).
    assert 0 <= kairos.live.allowable_qps < kairos.live.failing_qps  # the search bracketed it
    assert [line[:5] for line in lines if line.startswith("[")] == (
        ["[1/3]"] * len(settings.types) + ["[2/3]", "[3/3]"]
    )
    assert "live/sim" in format_summary(result)
