from __future__ import annotations

import numpy as np
import pytest

from kairos.errors import ConfigError, WorkloadError
from kairos.workload import (
    fixed_mix,
    load_mix,
    load_trace,
    parse_mix,
    poisson_stream,
    production_mix,
)


def procedural_production(n: int, rng: np.random.Generator) -> np.ndarray:
    """The production mix exactly as the paper's generator describes it, one draw at a time."""
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        x = rng.lognormal(5.1, 0.2)
        r = rng.random()
        if r < 8 / 99:
            x = float(rng.integers(1, 100))
        elif r < 30 / 99:
            x = float(rng.integers(200, 600))
        elif r < 35 / 99:
            x = float(rng.integers(600, 1000))
        elif not 100 <= x <= 200:
            x = float(rng.integers(190, 200))
        out[i] = int(np.ceil(x / 10) * 10)
    return out


def test_production_mix_mean_and_p99():
    mix = production_mix()
    assert mix.mean == pytest.approx(244, abs=1.5)
    assert mix.quantile(0.99) == pytest.approx(920, abs=10)
    assert mix.probs.sum() == pytest.approx(1.0)
    assert set(mix.support.tolist()) <= set(range(10, 1001, 10))


def test_production_mix_is_computed_once_and_each_call_owns_its_arrays():
    first, second = production_mix(), production_mix()
    assert np.array_equal(first.support, second.support)
    assert np.array_equal(first.probs, second.probs)
    first.probs[0] = 0.5  # one caller's change reaches no other caller
    assert production_mix().probs[0] == second.probs[0] != 0.5


def test_production_mix_matches_the_procedure():
    n = 40000
    direct = procedural_production(n, np.random.default_rng(3))
    mix = production_mix()
    # Bucket shares within ~4 standard errors.
    for lo, hi in [(0, 100), (100, 200), (200, 600), (600, 1000)]:
        expect = float(mix.probs[(mix.support > lo) & (mix.support <= hi)].sum())
        got = float(np.mean((direct > lo) & (direct <= hi)))
        se = np.sqrt(expect * (1 - expect) / n)
        assert abs(got - expect) < 4 * se + 1e-9, (lo, hi, got, expect)
    assert direct.mean() == pytest.approx(mix.mean, rel=0.02)
    sampled = mix.sample(n, np.random.default_rng(4))
    assert sampled.mean() == pytest.approx(mix.mean, rel=0.02)


def test_fixed_and_parse():
    assert parse_mix("fixed:100").mean == 100
    assert parse_mix("production").name == "production"
    with pytest.raises(WorkloadError):
        parse_mix("fixed:abc")
    with pytest.raises(WorkloadError):
        fixed_mix(0)


def test_empirical_mix_from_csv(write):
    mix = load_mix(write("mix.csv", "batch_size,weight\n10,1\n100,3\n"))
    assert mix.mean == pytest.approx(77.5)
    assert mix.share_at_most(10) == pytest.approx(0.25)
    with pytest.raises(WorkloadError, match="line 2"):
        load_mix(write("bad.csv", "batch_size,weight\n-5,1\n"))
    with pytest.raises(WorkloadError, match="batch_size,weight"):
        load_mix(write("bad2.csv", "size,w\n5,1\n"))


def test_poisson_stream_is_continuous_and_seeded():
    mix = production_mix()
    a = poisson_stream(100.0, 50000, mix, np.random.default_rng(1))
    b = poisson_stream(100.0, 50000, mix, np.random.default_rng(1))
    assert np.array_equal(a.arrival_s, b.arrival_s)
    gaps = np.diff(a.arrival_s)
    assert gaps.mean() == pytest.approx(0.01, rel=0.03)
    assert np.std(gaps) == pytest.approx(0.01, rel=0.05)  # exponential: std == mean
    assert np.mean(np.abs(gaps * 1000 - np.round(gaps * 1000)) > 1e-6) > 0.9  # not integer ms
    with pytest.raises(ConfigError):
        poisson_stream(0.0, 10, mix, np.random.default_rng(1))


def test_trace_replay(write):
    stream = load_trace(write("t.csv", "arrival_s,batch_size\n0.0,10\n0.5,20\n"))
    assert stream.arrival_s.tolist() == [0.0, 0.5]
    assert [q.batch_size for q in stream.queries()] == [10, 20]
    with pytest.raises(WorkloadError, match="sort"):
        load_trace(write("u.csv", "arrival_s,batch_size\n1.0,10\n0.5,20\n"))
