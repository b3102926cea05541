from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import kairos.data
from kairos.errors import ProfileError, UnknownInstanceTypeError, UnknownModelError
from kairos.profiles import (
    DEFAULT_PROFILES_RESOURCE,
    ExtrapolationWarning,
    default_profiles,
    load_profiles,
    profiles_from_samples,
)

CSV_HEADER = "model,instance_type,batch_size,latency_ms\n"


def two_point_profile():
    # batch 10: uniform-ish samples 10, 20, 30; batch 20: 30, 40, 50
    return profiles_from_samples({("m", "t", 10): [10, 20, 30], ("m", "t", 20): [50, 40, 30]}).get(
        "m", "t"
    )


def test_builtin_profiles_cover_paper_grid(builtin_profiles):
    assert set(builtin_profiles.model_names) == {"rm2", "wnd", "mtwnd", "dien", "ncf"}
    for model in builtin_profiles.model_names:
        mp = builtin_profiles.model(model)
        assert set(mp.instance_types) == {"g4dn.xlarge", "c5n.2xlarge", "r5n.large", "t3.xlarge"}
        p = mp.get("g4dn.xlarge")
        assert p.min_batch == 10 and p.max_batch == 1000 and len(p.batch_sizes) == 100
        assert p.quantiles_ms.shape == (100, 21)


def test_builtin_profiles_are_the_file_and_each_call_owns_its_own():
    # default_profiles parses the file once per process; each call must still equal a fresh
    # parse and share no array or warning flag with another call's profiles.
    first, second = default_profiles(), default_profiles()
    parsed = load_profiles(Path(kairos.data.__file__).parent / DEFAULT_PROFILES_RESOURCE)
    assert first.source == "built-in profiles"
    assert list(first.models) == list(parsed.models)
    for model, mp in parsed.models.items():
        assert list(first.model(model).by_type) == list(mp.by_type)
        for itype, p in mp.by_type.items():
            a, b = first.get(model, itype), second.get(model, itype)
            assert np.array_equal(a.batch_sizes, p.batch_sizes)
            assert np.array_equal(a.quantiles_ms, p.quantiles_ms)
            assert a.quantiles_ms is not b.quantiles_ms and a._warned is not b._warned
    first.get("rm2", "g4dn.xlarge").quantiles_ms[0, 0] = -1.0
    assert default_profiles().get("rm2", "g4dn.xlarge").quantiles_ms[0, 0] > 0


def test_builtin_warmup_outlier_dropped(builtin_profiles):
    # The raw first GPU run at batch 10 takes about half a second; the table must not keep it.
    p = builtin_profiles.get("rm2", "g4dn.xlarge")
    assert p.quantile_ms(10, 1.0) < 50.0
    assert 5.0 < p.mean_ms(10) < 6.0


def test_mean_and_quantiles_of_a_cell():
    p = two_point_profile()
    assert p.mean_ms(10) == pytest.approx(20.0)
    assert p.quantile_ms(10, 0.0) == pytest.approx(10.0)
    assert p.quantile_ms(10, 0.5) == pytest.approx(20.0)
    assert p.quantile_ms(10, 0.75) == pytest.approx(25.0)
    assert p.quantile_ms(20, 1.0) == pytest.approx(50.0)


def test_interpolates_between_batch_sizes():
    p = two_point_profile()
    assert p.mean_ms(15) == pytest.approx(30.0)
    assert p.quantile_ms(12, 0.0) == pytest.approx(10.0 + 0.2 * 20.0)


def test_below_grid_uses_smallest_batch():
    p = two_point_profile()
    assert p.mean_ms(3) == pytest.approx(p.mean_ms(10))


def test_extrapolates_above_grid_and_warns_once():
    p = two_point_profile()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert p.mean_ms(30) == pytest.approx(60.0)  # slope 2 ms per sample
        p.mean_ms(40)
    assert sum(issubclass(w.category, ExtrapolationWarning) for w in caught) == 1


def test_sampling_is_seeded_and_matches_distribution():
    p = two_point_profile()
    a = [p.sample_ms(10, np.random.default_rng(7)) for _ in range(3)]
    b = [p.sample_ms(10, np.random.default_rng(7)) for _ in range(3)]
    assert a == b
    draws = p.service_ms(np.full(20000, 10), np.random.default_rng(1).random(20000))
    assert draws.mean() == pytest.approx(20.0, rel=0.02)
    assert draws.min() >= 10.0 and draws.max() <= 30.0


def test_load_roundtrip(write):
    path = write("p.csv", CSV_HEADER + "m,t,10,5\nm,t,10,7\nm,t,20,9\n")
    ps = load_profiles(path)
    assert ps.get("m", "t").mean_ms(10) == pytest.approx(6.0)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("model,instance_type,batch_size\nm,t,10\n", "latency_ms"),
        (CSV_HEADER + "m,t,10,abc\n", "'abc' is not a number"),
        (CSV_HEADER + "m,t,10,-3\n", "'-3' is outside"),
        (CSV_HEADER + "m,t,0,3\n", "'0' is outside"),
        (CSV_HEADER + "m,t,2.5,3\n", "'2.5' is not a whole number"),
        (CSV_HEADER, "no rows"),
    ],
)
def test_malformed_files_raise_clear_errors(write, text, needle):
    with pytest.raises(ProfileError) as err:
        load_profiles(write("bad.csv", text))
    assert needle in str(err.value)
    assert "To fix:" in str(err.value)


def test_missing_file():
    with pytest.raises(ProfileError, match="does not exist"):
        load_profiles("/nonexistent/profiles.csv")


def test_unknown_model_and_type_list_known_ones(builtin_profiles):
    with pytest.raises(UnknownModelError, match="known: dien, mtwnd, ncf, rm2, wnd"):
        builtin_profiles.model("bert")
    with pytest.raises(UnknownInstanceTypeError, match="g4dn.xlarge"):
        builtin_profiles.get("rm2", "p3.2xlarge")


def test_base_type_and_heterogeneity(builtin_profiles):
    mp = builtin_profiles.model("rm2")
    assert mp.base_type(mp.instance_types) == "g4dn.xlarge"
    c = mp.heterogeneity(mp.instance_types)
    assert c["g4dn.xlarge"] == 1.0
    assert all(0 < v < 1 for t, v in c.items() if t != "g4dn.xlarge")
