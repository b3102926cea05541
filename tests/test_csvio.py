"""One CSV reader for profiles, prices, batch mixes and traces: every defect class is one
error that names the file and the line, raised by each of the four loaders."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from kairos.catalog import load_prices
from kairos.csvio import MAX_LINE_BYTES, Column, _fast_value, _value, read_csv, read_numeric_csv
from kairos.errors import KairosError, PriceError, ProfileError, WorkloadError
from kairos.limits import Range
from kairos.profiles import load_profiles
from kairos.workload import load_mix, load_trace

# (loader, its error class, header, a valid row, index of a numeric field in the row)
KINDS: dict[str, tuple[Callable[[Path], object], type[KairosError], str, str, int]] = {
    "profiles": (
        load_profiles,
        ProfileError,
        "model,instance_type,batch_size,latency_ms",
        "m,t,10,5.5",
        3,
    ),
    "prices": (load_prices, PriceError, "instance_type,price_per_hr", "t,0.5", 1),
    "mix": (load_mix, WorkloadError, "batch_size,weight", "10,1", 1),
    "trace": (load_trace, WorkloadError, "arrival_s,batch_size", "0.5,10", 0),
}


def _with_field(row: str, index: int, value: str) -> str:
    fields = row.split(",")
    fields[index] = value
    return ",".join(fields)


@pytest.fixture(params=sorted(KINDS))
def kind(request):
    return KINDS[request.param]


def _load_err(kind, tmp_path: Path, data: bytes, name: str = "f.csv") -> str:
    loader, error, *_ = kind
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(error) as err:
        loader(path)
    text = str(err.value)
    assert "To fix:" in text and "\n" not in text
    return text


def test_valid_file_loads(kind, tmp_path):
    loader, _, header, row, _ = kind
    path = tmp_path / "ok.csv"
    path.write_text(f"\ufeff{header}\r\n{row}\r\n\r\n")  # BOM, CRLF and a blank line are fine
    assert loader(path) is not None


def test_non_utf8_names_the_line(kind, tmp_path):
    _, _, header, row, k = kind
    data = f"{header}\n{row}\n".encode() + _with_field(row, k, "X").encode().replace(b"X", b"\xe9")
    text = _load_err(kind, tmp_path, data + b"\n")
    assert "line 3" in text and "0xe9" in text and "UTF-8" in text


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "abc", ""])
def test_non_finite_or_non_numbers_name_the_line(kind, tmp_path, value):
    _, _, header, row, k = kind
    text = _load_err(kind, tmp_path, f"{header}\n{row}\n{_with_field(row, k, value)}\n".encode())
    assert "line 3" in text and repr(value) in text


def test_empty_file(kind, tmp_path):
    assert "is empty" in _load_err(kind, tmp_path, b"")


def test_header_without_rows(kind, tmp_path):
    _, _, header, _, _ = kind
    assert "no rows" in _load_err(kind, tmp_path, f"{header}\n".encode())


def test_missing_column_is_named(kind, tmp_path):
    _, _, header, row, k = kind
    columns = header.split(",")
    bad = ",".join(c if i != k else "wrong" for i, c in enumerate(columns))
    text = _load_err(kind, tmp_path, f"{bad}\n{row}\n".encode())
    assert "line 1" in text and columns[k] in text and "wrong" in text


def test_wrong_field_count(kind, tmp_path):
    _, _, header, row, _ = kind
    text = _load_err(kind, tmp_path, f"{header}\n{row},extra\n".encode())
    assert "line 2" in text and "field" in text


def test_directory_and_missing_file_are_told_apart(kind, tmp_path):
    loader, error, *_ = kind
    with pytest.raises(error, match="is a folder"):
        loader(tmp_path)
    with pytest.raises(error, match="does not exist"):
        loader(tmp_path / "absent.csv")


def test_gzip_that_is_not_gzip(tmp_path):
    path = tmp_path / "p.csv.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ProfileError, match="cannot be read"):
        load_profiles(path)


def test_gzip_profiles_load(tmp_path):
    path = tmp_path / "p.csv.gz"
    path.write_bytes(gzip.compress(b"model,instance_type,batch_size,latency_ms\nm,t,10,5\n"))
    assert load_profiles(path).get("m", "t").max_batch == 10


def test_row_and_line_caps_bound_memory(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("x\n" + "1\n" * 11)
    cols = [Column("x", Range("x", 0, 10))]
    with pytest.raises(WorkloadError, match="more than 10 rows"):
        list(read_csv(path, "test file", cols, WorkloadError, max_rows=10))
    path.write_bytes(b"x\n" + b"1" * (MAX_LINE_BYTES + 10) + b"\n")
    with pytest.raises(WorkloadError, match="line 2 is longer"):
        list(read_csv(path, "test file", cols, WorkloadError))


def test_duplicate_price_rows_are_refused(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("instance_type,price_per_hr\nt,0.5\nt,0.6\n")
    with pytest.raises(PriceError, match="line 3.*second time"):
        load_prices(path)


NUMERIC = (
    Column("t", Range("t", 0, 100)),
    Column("n", Range("n", 1, 50, integer=True)),
    Column("w", Range("w", 0, 1, lo_open=True), optional=True),
)


def _rows(path: Path, max_rows: int = 10) -> list[tuple[object, ...]] | str:
    """What read_csv yields (values per row), or its error's message."""
    try:
        return [
            v for _, v in read_csv(path, "test file", NUMERIC, WorkloadError, max_rows=max_rows)
        ]
    except WorkloadError as exc:
        return str(exc)


@pytest.mark.parametrize(
    "data",
    [
        b"t,n\n0,1\n2.5,50\n",
        b"\xef\xbb\xbft , n,w\r\n1e1,3,1\r\n\r\n.5,4,0.25",  # BOM, CRLF, blank, no last \n
        b"n,x,t\n7,9,1\n",  # another order, an extra number column
        b"t,n\n" + b"1,2\n" * 10,  # exactly the cap
    ],
)
def test_numeric_pass_takes_plain_files_with_the_row_readers_values(tmp_path, data):
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    fast = read_numeric_csv(path, NUMERIC, max_rows=10)
    assert fast is not None
    rows = _rows(path)
    assert isinstance(rows, list)
    for k, column in enumerate(fast):
        expected = [r[k] for r in rows]
        if column is None:
            assert expected == [None] * len(rows)
        else:
            assert column.tolist() == expected
            allowed = NUMERIC[k].values
            whole = allowed is not None and allowed.integer
            assert column.dtype == (np.int64 if whole else np.float64)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"t,n\n",
        b"t,x\n1,2\n",
        b"t,n\n1,2\n3\n",
        b"t,n\n1,2,3\n",
        b"t,n\n1,2\n,3\n",
        b"t,n\n1,2\nnan,3\n",
        b"t,n\n1,2\n1e999,3\n",
        b"t,n\n-1,2\n",
        b"t,n\n1,0\n",
        b"t,n\n1,51\n",
        b"t,n\n1,2.5\n",
        b"t,n,w\n1,2,0\n",
        b"t,n\n1,2\n1,2\n1,2\n1,2\n1,2\n1,2\n1,2\n1,2\n1,2\n1,2\n1,2\n",  # 11 > cap
        b"t,n\n1,2\n\xe9,2\n",
        b"t,n\n1\r2,3\n",
        b'"t",n\n1,2\n',
        b't,n\n"1",2\n',
        b"t,n\n1,2\n \n",
        b"t,n\n1 1,2\n",
        pytest.param(b"t,n\n0." + b"0" * MAX_LINE_BYTES + b"1,2\n", id="long-line"),
        pytest.param(b"t,n\n1,2\n0." + b"0" * MAX_LINE_BYTES + b"1,2", id="long-last-line"),
        b"\nt,n\n1,2\n",
    ],
)
def test_numeric_pass_leaves_every_doubt_to_the_row_reader(tmp_path, data):
    """None for every defect (and for some valid files), so the caller reads row by row."""
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    assert read_numeric_csv(path, NUMERIC, max_rows=10) is None


def test_numeric_pass_reads_gzip_and_refuses_folders_and_text_columns(tmp_path):
    path = tmp_path / "f.csv.gz"
    path.write_bytes(gzip.compress(b"t,n\n1,2\n3,4\n"))
    fast = read_numeric_csv(path, NUMERIC)
    assert fast is not None and fast[0] is not None and fast[0].tolist() == [1.0, 3.0]
    path.write_bytes(b"not gzip")
    assert read_numeric_csv(path, NUMERIC) is None
    assert read_numeric_csv(tmp_path, NUMERIC) is None
    assert read_numeric_csv(tmp_path / "absent.csv", NUMERIC) is None
    (tmp_path / "p.csv").write_text("model,t\nm,1\n")
    assert read_numeric_csv(tmp_path / "p.csv", [Column("model"), NUMERIC[0]]) is None


FIELDS = [
    *("0", "1", " 7 ", "10", "1e3", "1E3", "+5", "-0", "-1", "2.5", "10.0", "1_000", "0x10"),
    *("", "  ", "\u00a03\u00a0", "\u0663", "nan", "NaN", "inf", "-inf", "1e9", "1e10", "1e400"),
    *("abc", "1 2", "1e", "--1", "0.0000001", "999999999.5", "1000000000"),
]
FIELD_COLUMNS = [
    Column("name"),
    Column("n", Range("n", 0, 1e9, integer=True)),
    Column("x", Range("x", 0, 1e9, lo_open=True)),
    Column("y", Range("y", -1, 1e9)),
]


@pytest.mark.parametrize("col", FIELD_COLUMNS, ids=lambda c: c.name)
def test_the_row_readers_fast_check_takes_and_refuses_what_value_does(col):
    # read_csv converts a row with _fast_value and reads it again with _value only when that
    # refuses it: both must agree on every field, value and type included.
    fast = _fast_value(col)
    for field in FIELDS:
        try:
            want = _value(field, col, "f.csv", 2, ProfileError)
        except ProfileError:
            with pytest.raises(ValueError):
                fast(field)
            continue
        got = fast(field)
        assert got == want and type(got) is type(want), (field, got, want)
