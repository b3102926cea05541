"""One reader and validator for every CSV file Kairos reads: profiles, prices, mixes, traces.

``read_csv`` streams a file row by row and checks, before a value reaches its caller, what
every format shares: the file exists and is a readable file (not a folder); it is UTF-8
(optionally gzip-compressed, ``.gz``); it has a header with the required columns; each row
has one field per header column; each number parses, is finite and is within its column's
range. Any defect raises the caller's error class with one line naming the file and the
line. Lines are read with a length cap and rows are counted against a cap, so a malformed or
enormous file cannot take unbounded memory (docs/limits.md).
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from kairos.errors import KairosError
from kairos.limits import MAX_CSV_ROWS, Range

MAX_LINE_BYTES = 1 << 20
# read_numeric_csv parses this many bytes at a time, so its own memory stays bounded.
NUMERIC_CHUNK_BYTES = 1 << 22
# The only bytes of a data row read_numeric_csv takes on: plain decimal numbers and commas.
_NUMERIC_BYTES = b"0123456789.,-+eE \t\r\n"


@dataclass(frozen=True)
class Column:
    """A column: text (``values is None``) or a number within ``values``. An ``optional``
    column may be missing from the header; its value is then None on every row."""

    name: str
    values: Range | None = None
    optional: bool = False


def check_input_file(path: str | Path, what: str, error: type[KairosError], fix: str) -> Path:
    """``path`` as a Path if it is an existing, readable file; else ``error`` saying which."""
    p = Path(path)
    if p.is_dir():
        raise error(f"{what} {str(p)!r} is a folder, not a file.", fix)
    if not p.exists():
        raise error(f"{what} {str(p)!r} does not exist.", fix)
    if not p.is_file():
        raise error(f"{what} {str(p)!r} is not a regular file.", fix)
    return p


def read_csv(
    path: str | Path,
    what: str,
    columns: Sequence[Column],
    error: type[KairosError],
    *,
    max_rows: int = MAX_CSV_ROWS,
) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """Yield ``(line number, values)`` per data row, values in ``columns`` order.

    ``what`` names the file's role in messages ("profile file"); ``error`` is the class
    raised for every defect. Blank lines are skipped; extra columns are ignored.
    """
    names = [c.name for c in columns]
    header_text = ",".join(names)
    p = check_input_file(
        path, what, error, f"pass the path of a CSV file with columns {header_text}."
    )
    source = str(p)
    reader: Any = None
    try:
        with _open(p) as fh:
            reader = csv.reader(_text_lines(fh, source, error))
            header = next(reader, None)
            if header is None:
                raise error(
                    f"{what} {source} is empty.",
                    f"write the header line '{header_text}', then one row per line.",
                )
            header = [h.strip() for h in header]
            missing = [c.name for c in columns if c.name not in header and not c.optional]
            if missing:
                raise error(
                    f"{source} line 1: the header lacks column(s) {', '.join(missing)} (found: "
                    f"{', '.join(header) or 'nothing'}).",
                    f"write the header line '{header_text}'.",
                )
            index = [header.index(n) if n in header else -1 for n in names]
            fast = [(i, _fast_value(col)) for i, col in zip(index, columns, strict=True)]
            rows = 0
            for fields in reader:
                if not (fields and fields[0].strip()) and not any(f.strip() for f in fields):
                    continue
                line = reader.line_num
                if len(fields) != len(header):
                    raise error(
                        f"{source} line {line}: {len(fields)} field(s), but the header has "
                        f"{len(header)}.",
                        "give every row one value per header column, separated by commas.",
                    )
                rows += 1
                if rows > max_rows:
                    raise error(
                        f"{what} {source} has more than {max_rows:,} rows (the cap, see "
                        "docs/limits.md).",
                        "split the file, or thin it (for example keep quantiles per cell).",
                    )
                try:
                    values = tuple([convert(fields[i]) if i >= 0 else None for i, convert in fast])
                except ValueError:
                    # A defect: read the row again value by value to name it.
                    values = tuple(
                        _value(fields[i], col, source, line, error) if i >= 0 else None
                        for i, col in zip(index, columns, strict=True)
                    )
                yield line, values
            if rows == 0:
                raise error(
                    f"{what} {source} has a header but no rows.",
                    f"add rows under the header '{header_text}'.",
                )
    except csv.Error as exc:
        line = reader.line_num if reader is not None else 0
        raise error(
            f"{source} line {line}: not valid CSV ({exc}).", "check the quoting on that line."
        ) from None
    except (OSError, EOFError, zlib.error) as exc:
        raise error(
            f"{what} {source} cannot be read ({exc}).",
            "check it is a readable file (gzip-compressed only if its name ends in .gz).",
        ) from None


def _open(p: Path) -> IO[bytes] | gzip.GzipFile:
    if p.suffix == ".gz":
        return gzip.GzipFile(p, "rb")
    return open(p, "rb")  # noqa: SIM115


def _text_lines(
    fh: IO[bytes] | gzip.GzipFile, source: str, error: type[KairosError]
) -> Iterator[str]:
    """Each line decoded as UTF-8 (a byte-order mark at the start is allowed)."""
    number = 0
    while True:
        raw = fh.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            raise error(
                f"{source} line {number} is longer than {MAX_LINE_BYTES:,} bytes.",
                "check the file is a CSV with one row per line.",
            )
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise error(
                f"{source} line {number}: byte {raw[exc.start]:#04x} at column {exc.start + 1} "
                "is not UTF-8 text.",
                "save the file as UTF-8 (most editors and spreadsheet exports offer it).",
            ) from None
        yield text


def _fast_value(col: Column) -> Callable[[str], Any]:
    """What ``_value`` returns for a valid field, with ValueError for any field it would refuse.

    The profile table's 42,000 rows went through ``_value`` and ``Range.problem`` at about
    7 us a row (0.3 s a load, paid by every process that loads it); this check is the same
    test inlined, and a row it refuses is read again by ``_value``, which names the defect.
    """
    allowed = col.values
    if allowed is None:

        def text(field: str) -> str:
            t = field.strip()
            if not t:
                raise ValueError(field)
            return t

        return text
    lo, hi, lo_open, whole = allowed.lo, allowed.hi, allowed.lo_open, allowed.integer
    isfinite = math.isfinite

    def number(field: str) -> float | int:
        x = float(field.strip())
        if not isfinite(x) or not (x > lo if lo_open else x >= lo) or not x <= hi:
            raise ValueError(field)
        if whole:
            if x != int(x):
                raise ValueError(field)
            return int(x)
        return x

    return number


def _value(text: str, col: Column, source: str, line: int, error: type[KairosError]) -> Any:
    t = text.strip()
    if col.values is None:
        if not t:
            raise error(
                f"{source} line {line}: {col.name} is empty.", f"fill in {col.name} on every row."
            )
        return t
    try:
        x = float(t)
    except ValueError:
        raise error(
            f"{source} line {line}: {col.name} {text!r} is not a number.",
            f"write {col.name} as a plain decimal number.",
        ) from None
    problem = col.values.problem(x)
    if problem is not None:
        raise error(
            f"{source} line {line}: {col.name} {text!r} {problem}.",
            f"give {col.name} as {col.values.describe()}.",
        )
    return int(x) if col.values.integer else x


def read_numeric_csv(
    path: str | Path, columns: Sequence[Column], *, max_rows: int = MAX_CSV_ROWS
) -> tuple[np.ndarray | None, ...] | None:
    """The ``columns`` of a plain numeric CSV file as arrays, parsed a chunk at a time by numpy
    (a day-long trace of 5 million rows in 3-5 s instead of 30-100 s row by row).

    It returns arrays only where ``read_csv`` would yield exactly these values without an
    error: float64 per number column, int64 where the column's range is whole numbers, None
    for an optional column the header lacks. Anything else (a defect, or what only the row
    reader handles: quotes, ``nan`` spelled out, whitespace-only rows, non-ASCII bytes, text
    columns, too many rows) gives None and never raises, so the caller reads the file again
    with ``read_csv``, which names the line at fault with the message it always gave.
    """
    if any(c.values is None for c in columns):
        return None
    p = Path(path)
    try:
        if not p.is_file():
            return None
        # Counting newlines first bounds the arrays before they are built; more lines than
        # the cap allows (rows, or blank lines among them) is left to the row reader.
        capacity = _count_lines(p) - 1
        if capacity <= 0 or capacity > max_rows:
            return None
        with _open(p) as fh:
            header = _plain_header(fh)
            if header is None:
                return None
            index = [header.index(c.name) if c.name in header else -1 for c in columns]
            if any(i < 0 and not c.optional for i, c in zip(index, columns, strict=True)):
                return None
            out = [
                np.empty(capacity, np.int64 if _whole(c) else np.float64) if i >= 0 else None
                for i, c in zip(index, columns, strict=True)
            ]
            rows = 0
            for block in _numeric_blocks(fh):
                if block is None or block.shape[1] != len(header):
                    return None
                end = rows + len(block)
                if end > capacity:
                    return None
                for i, col, values in zip(index, columns, out, strict=True):
                    if values is None:
                        continue
                    assert col.values is not None  # text columns returned None above
                    if not _all_within(block[:, i], col.values):
                        return None
                    values[rows:end] = block[:, i]  # whole numbers, so exact as int64
                rows = end
    except (OSError, EOFError, zlib.error, ValueError, csv.Error):
        return None
    if rows == 0:
        return None
    # Blank lines leave the arrays longer than the rows; trim those (rare) copies.
    return tuple(
        None if values is None else values if rows == capacity else values[:rows].copy()
        for values in out
    )


def _whole(col: Column) -> bool:
    return col.values is not None and col.values.integer


def _count_lines(p: Path) -> int:
    """Lines in the file (a last line without a newline counts), an upper bound on rows."""
    count = 0
    last = b"\n"
    with _open(p) as fh:
        while chunk := fh.read(NUMERIC_CHUNK_BYTES):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def _plain_header(fh: IO[bytes] | gzip.GzipFile) -> list[str] | None:
    """The header's names as ``read_csv`` reads them, or None for one with quotes (a quoted
    field may span lines, which only the row reader follows) or over the line cap."""
    raw = fh.readline(MAX_LINE_BYTES + 1)
    if len(raw) > MAX_LINE_BYTES or b'"' in raw:
        return None
    fields = next(csv.reader([raw.decode("utf-8-sig")]), None)
    return None if fields is None else [f.strip() for f in fields]


def _numeric_blocks(fh: IO[bytes] | gzip.GzipFile) -> Iterator[np.ndarray | None]:
    """The rows after the header as 2-D float arrays, one per chunk of whole lines; None
    (and the caller stops) at the first chunk the row reader must judge."""
    carry = b""
    while True:
        chunk = fh.read(NUMERIC_CHUNK_BYTES)
        data = carry + chunk
        cut = data.rfind(b"\n") + 1 if chunk else len(data)
        block, carry = data[:cut], data[cut:]
        if len(carry) > MAX_LINE_BYTES:
            yield None
            return
        if block.strip():
            yield _parse_block(block)
        if not chunk:
            return


def _parse_block(block: bytes) -> np.ndarray | None:
    if block.translate(None, _NUMERIC_BYTES):
        return None  # letters (nan, inf, text), quotes, NUL or non-ASCII bytes
    crlf = block.count(b"\r\n")
    if block.count(b"\r") != crlf:
        return None  # a carriage return inside a line
    ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == ord("\n"))
    last = len(block) - 1 - int(ends[-1]) if len(ends) else len(block)
    longest = max(int(np.diff(ends, prepend=-1).max()) if len(ends) else 0, last)
    if longest > MAX_LINE_BYTES:  # lengths with the newline, as _text_lines counts them
        return None
    text = (block.replace(b"\r\n", b"\n") if crlf else block).decode("ascii")
    # np.loadtxt parses numbers as float() does (measured: the same values, and it refuses
    # every field float() refuses, such as "1e", "--1" or "1 2"); it skips empty lines as
    # read_csv does and refuses a row with a different field count.
    try:
        parsed = np.loadtxt(
            io.StringIO(text), delimiter=",", dtype=np.float64, comments=None, ndmin=2
        )
    except ValueError:
        return None
    return parsed


def _all_within(values: np.ndarray, allowed: Range) -> bool:
    """Whether every value passes ``allowed.problem``, checked over the whole array."""
    ok = np.isfinite(values)
    ok &= values > allowed.lo if allowed.lo_open else values >= allowed.lo
    ok &= values <= allowed.hi
    if allowed.integer:
        ok &= np.floor(values) == values
    return bool(ok.all())
