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
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from kairos.errors import KairosError
from kairos.limits import MAX_CSV_ROWS, Range

MAX_LINE_BYTES = 1 << 20


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
            rows = 0
            for fields in reader:
                if not any(f.strip() for f in fields):
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
