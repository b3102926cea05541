"""Synthetic traces from a seed, and loading real ones (with or without batch sizes)."""

from __future__ import annotations

import numpy as np
import pytest

from kairos import csvio, traces, workload
from kairos.errors import WorkloadError
from kairos.traces import SHAPES, TraceSettings, rate_curve, synthetic_trace, write_trace
from kairos.workload import fixed_mix, load_trace, production_mix

MIX = production_mix()


def per_minute(stream) -> np.ndarray:
    return np.bincount((stream.arrival_s // 60).astype(np.int64)) / 60.0


@pytest.mark.parametrize("shape", list(SHAPES))
def test_same_seed_same_trace_other_seed_another(shape):
    s = TraceSettings(duration_s=600, peak_qps=30, trough_qps=5)
    one, two = synthetic_trace(shape, s, MIX, 3), synthetic_trace(shape, s, MIX, 3)
    assert np.array_equal(one.arrival_s, two.arrival_s)
    assert np.array_equal(one.batch_size, two.batch_size)
    other = synthetic_trace(shape, s, MIX, 4)
    assert len(other) != len(one) or not np.array_equal(other.arrival_s, one.arrival_s)
    assert (np.diff(one.arrival_s) >= 0).all() and one.arrival_s[-1] < 600
    assert set(one.batch_size.tolist()) <= set(MIX.support.tolist())


def test_diurnal_goes_from_trough_to_peak_and_back():
    s = TraceSettings(duration_s=3600, peak_qps=90, trough_qps=30, noise=0.0)
    curve = rate_curve("diurnal", s, np.random.default_rng(0)).rates_qps
    assert curve[0] == pytest.approx(30, abs=0.01) and curve[1800] == pytest.approx(90, abs=0.01)
    rates = per_minute(synthetic_trace("diurnal", s, MIX, 1))
    assert rates[:3].mean() == pytest.approx(30, rel=0.15)
    assert rates[29:31].mean() == pytest.approx(90, rel=0.1)
    noisy = rate_curve("diurnal", TraceSettings(noise=0.2), np.random.default_rng(0)).rates_qps
    assert noisy.min() >= 0 and len(np.unique(noisy[:60])) == 60  # one factor per minute


def test_step_spike_and_on_off():
    s = TraceSettings(duration_s=600, peak_qps=50, trough_qps=10, at_s=300, spike_s=60)
    rng = np.random.default_rng(0)
    step = rate_curve("step", s, rng).rates_qps
    assert step[299] == 10 and step[300] == 50 and step[-1] == 50
    spike = rate_curve("spike", s, rng).rates_qps
    assert spike[299] == 10 and spike[300] == 50 and spike[359] == 50 and spike[360] == 10
    bursts = TraceSettings(duration_s=720, peak_qps=50, trough_qps=0, on_s=60, off_s=300)
    rates = per_minute(synthetic_trace("on-off", bursts, MIX, 2))
    assert (rates[:5] == 0).all() and (rates[6:11] == 0).all()  # idle minutes are silent
    assert 0.8 * 50 * 0.85 < rates[5] < 50 * 1.15 and rates[11] > 30


def test_multiscale_moves_at_every_scale():
    s = TraceSettings(duration_s=3600, peak_qps=60, trough_qps=20, noise=0.2)
    curve = rate_curve("multiscale", s, np.random.default_rng(1)).rates_qps
    assert curve.max() <= 180 and curve.min() >= 0
    # second-scale bursts: some seconds are 2x their minute's median
    minutes = curve[: 3600 // 60 * 60].reshape(-1, 60)
    assert (minutes.max(axis=1) >= 1.9 * np.median(minutes, axis=1)).mean() > 0.3


def test_bad_settings_are_one_line_with_a_fix():
    cases: list[tuple[dict[str, float], str]] = [
        ({"peak_qps": 0}, "--peak-qps 0"),
        ({"trough_qps": 100, "peak_qps": 50}, "above --peak-qps"),
        ({"noise": 2}, "--noise 2"),
        ({"at_s": 5000, "duration_s": 600}, "--at-s 5000"),
        ({"duration_s": 1e9}, "--duration-s"),
    ]
    for kwargs, needle in cases:
        with pytest.raises(WorkloadError, match="To fix") as err:
            TraceSettings(**kwargs)
        assert needle in str(err.value)
    with pytest.raises(WorkloadError, match="not known"):
        synthetic_trace("sawtooth", TraceSettings(), MIX)


def test_a_trace_over_the_cap_is_refused_before_drawing(monkeypatch):
    monkeypatch.setattr(traces, "MAX_TRACE_QUERIES", 1000)
    with pytest.raises(WorkloadError, match="above the cap of 1,000"):
        synthetic_trace("step", TraceSettings(duration_s=600), MIX)


def test_written_traces_load_back(tmp_path):
    stream = synthetic_trace("spike", TraceSettings(duration_s=120), MIX, 0)
    loaded = load_trace(write_trace(stream, tmp_path / "t.csv"))
    assert np.allclose(loaded.arrival_s, stream.arrival_s, atol=1e-6, rtol=0)
    assert np.array_equal(loaded.batch_size, stream.batch_size)


def test_arrival_times_only_take_batches_from_the_mix(write):
    path = write("a.csv", "arrival_s\n0.5\n1.0\n1.5\n")
    stream = load_trace(path, fixed_mix(40), seed=1)
    assert stream.arrival_s.tolist() == [0.5, 1.0, 1.5] and stream.batch_size.tolist() == [40] * 3
    drawn = load_trace(path, MIX, seed=1).batch_size
    assert np.array_equal(drawn, load_trace(path, MIX, seed=1).batch_size)
    with pytest.raises(WorkloadError, match="no batch_size column.*To fix: add a batch_size"):
        load_trace(path)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("arrival_s,batch_size\n1.0,10\n0.5,10\n", "line 3: arrival_s 0.5 is earlier"),
        ("arrival_s,batch_size\n-1,10\n", "line 2: arrival_s '-1' is outside"),
        ("arrival_s,batch_size\nnan,10\n", "line 2: arrival_s 'nan' is not a finite"),
        ("arrival_s\n1.0\nNaN\n", "line 3: arrival_s 'NaN' is not a finite"),
        ("", "is empty"),
        ("arrival_s,batch_size\n", "has a header but no rows"),
        ("batch_size\n10\n", "lacks column(s) arrival_s"),
        # Every check the numpy pass makes must fall back to the same line-numbered message.
        ("arrival_s,batch_size\n0,1\n1,1\n2,1\n1.5,1\n", "line 5: arrival_s 1.5 is earlier"),
        ("arrival_s,batch_size\n0.5,10\n\n0.4,10\n", "line 4: arrival_s 0.4 is earlier"),
        ("arrival_s,batch_size\n0.5,10\ninf,10\n", "line 3: arrival_s 'inf' is not a finite"),
        ("arrival_s,batch_size\n0.5,10\n1e400,10\n", "line 3: arrival_s '1e400' is not a fin"),
        ("arrival_s,batch_size\n0.5,10\n2e9,10\n", "line 3: arrival_s '2e9' is outside"),
        ("arrival_s,batch_size\n0.5,\n", "line 2: batch_size '' is not a number"),
        ("arrival_s,batch_size\n0.5,ten\n", "line 2: batch_size 'ten' is not a number"),
        ("arrival_s,batch_size\n0.5,1e\n", "line 2: batch_size '1e' is not a number"),
        ("arrival_s,batch_size\n0.5,10\n0.6,0\n", "line 3: batch_size '0' is outside its"),
        ("arrival_s,batch_size\n0.5,1000001\n", "line 2: batch_size '1000001' is outside"),
        ("arrival_s,batch_size\n0.5,1.5\n", "line 2: batch_size '1.5' is not a whole"),
        ("arrival_s,batch_size\n0.5,10,3\n", "line 2: 3 field(s), but the header has 2"),
        ("arrival_s,batch_size\n0.5\n", "line 2: 1 field(s), but the header has 2"),
        ("arrival_s,batch_size,x\n0.5,10\n", "line 2: 2 field(s), but the header has 3"),
        ("arrival,batch_size\n0.5,10\n", "lacks column(s) arrival_s (found: arrival, batch_"),
        ("\narrival_s,batch_size\n0.5,10\n", "line 1: the header lacks column(s) arrival_s"),
        ("arrival_s,batch_size\n0.5,10\n0.6,1\x000\n", r"line 3: batch_size '1\x000' is not a"),
    ],
)
def test_bad_traces_are_one_line(write, text, needle):
    with pytest.raises(WorkloadError) as err:
        load_trace(write("bad.csv", text), MIX)
    message = str(err.value)
    assert needle in message and "To fix:" in message and "\n" not in message


def test_a_trace_file_over_the_cap_is_refused(write, monkeypatch):
    monkeypatch.setattr(workload, "MAX_TRACE_QUERIES", 2)
    with pytest.raises(WorkloadError, match="more than 2 rows"):
        load_trace(write("big.csv", "arrival_s,batch_size\n0,1\n1,1\n2,1\n"))


def test_a_trace_line_over_the_line_cap_is_refused(write):
    long_zero = "0." + "0" * csvio.MAX_LINE_BYTES + "1"  # parses (to 1e-1048576 = 0.0)
    with pytest.raises(WorkloadError, match="line 3 is longer than 1,048,576 bytes"):
        load_trace(write("long.csv", f"arrival_s,batch_size\n0,1\n{long_zero},1\n"))


def test_the_cap_counts_rows_not_blank_lines(write, monkeypatch):
    monkeypatch.setattr(workload, "MAX_TRACE_QUERIES", 2)
    assert len(load_trace(write("ok.csv", "arrival_s,batch_size\n0,1\n\n\n1,1\n\n"))) == 2
    with pytest.raises(WorkloadError, match="has more than 2 rows"):
        load_trace(write("big.csv", "arrival_s,batch_size\n0,1\n1,1\n2,1"))


def test_well_formed_traces_skip_the_row_reader(write, monkeypatch):
    """The numpy pass takes plain files whole; the row reader is only for what it refuses."""
    monkeypatch.setattr(workload, "read_csv", None)  # any use of it would fail
    plain = load_trace(write("t.csv", "\ufeffarrival_s , batch_size\r\n0,7\r\n\r\n1.5e1,8"))
    assert plain.arrival_s.tolist() == [0.0, 15.0] and plain.batch_size.tolist() == [7, 8]
    assert plain.arrival_s.dtype == np.float64 and plain.batch_size.dtype == np.int64
    drawn = load_trace(write("a.csv", "arrival_s\n0.5\n1.0\n"), MIX, seed=1)
    assert drawn.batch_size.dtype == np.int64 and len(drawn) == 2


@pytest.mark.parametrize(
    "text",
    [
        'arrival_s,batch_size\n"0.5",10\n1,"20"\n',  # quotes
        "arrival_s,batch_size\n0.5,10\n  \n1,20\n",  # a whitespace-only line
        "arrival_s,batch_size,note\n0.5,10,a\n1,20,b\n",  # a text column, ignored
        "arrival_s,batch_size\n0.5,10\n1,2_0\n",  # float() reads 2_0 as 20
    ],
)
def test_what_the_numpy_pass_refuses_still_loads_row_by_row(write, text):
    stream = load_trace(write("t.csv", text))
    assert stream.arrival_s.tolist() == [0.5, 1.0] and stream.batch_size.tolist() == [10, 20]


def test_chunk_edges_do_not_change_a_trace(write, monkeypatch):
    stream = synthetic_trace("spike", TraceSettings(duration_s=60), MIX, 0)
    path = write_trace(stream, write("t.csv", "").with_name("s.csv"))
    whole = load_trace(path)
    monkeypatch.setattr(csvio, "NUMERIC_CHUNK_BYTES", 7)  # lines split across many reads
    cut = load_trace(path)
    assert np.array_equal(cut.arrival_s, whole.arrival_s)
    assert np.array_equal(cut.batch_size, whole.batch_size)
