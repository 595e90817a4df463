"""Read a credited collection file (CSV, JSON Lines or Parquet) as a stream of rows of one schema.

Each reader turns its format into the same logical row (a dict of the schema's fields, with lists of
credit and lineage objects), one row at a time, holding at most one Parquet record batch or one text line
in memory. A file that is not its format at all is refused before the first row, in one line; a row that
cannot be read (a broken JSON line, a CSV row with too few cells, the partial last row of a truncated
file) comes out as a ``RawRow`` with its ``problem`` and no fields, so the importer refuses that row alone.

The schema (version 1) is documented in docs/concepts/registry.md, "Importing a collection".
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from endcredits.consent.rules import USES
from endcredits.errors import ValidationError

SCHEMA_VERSION = 1
"""The version of the row schema this endcredits reads (a row may say so in its ``schema`` field)."""

FORMATS: tuple[str, ...] = ("csv", "jsonl", "parquet")
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}

SCALAR_FIELDS: tuple[str, ...] = ("content", "work", "kind", "title", "source", "licence", "rights_holder", "schema")
LIST_FIELDS: tuple[str, ...] = ("credits", "lineage", "consent")
CREDIT_KEYS: tuple[str, ...] = ("name", "person", "role", "weight")
LINEAGE_KEYS: tuple[str, ...] = ("parent", "share")

ROW_BYTES_MAX = 1024 * 1024
"""Longest CSV record or JSON line read; a longer one is refused as a row."""

PARQUET_BATCH_ROWS = 1_024
"""Rows read from a Parquet file at a time."""

_CSV_CREDIT = re.compile(r"credit([1-9][0-9]{0,3})_(name|person|role|weight)")
_CSV_PARENT = re.compile(r"parent([1-9][0-9]{0,3})(_share)?")
_CSV_CONSENT = re.compile(r"consent_([a-z_]+)")

Progress = Callable[[int, int], None]
"""Called with (done, total): bytes read of a CSV or JSON Lines file, rows of a Parquet file."""


@dataclass(frozen=True)
class RawRow:
    """One row as read: its 1-based number among the file's data rows, and its fields or why not."""

    number: int
    fields: dict[str, Any] | None
    problem: str | None = None


def detect_format(path: Path, given: str | None) -> str:
    """``given`` when set (one of ``FORMATS``), else the format named by the file's extension."""
    if given is not None:
        if given not in FORMATS:
            raise ValidationError(f"unknown format {given!r}: one of {', '.join(FORMATS)}")
        return given
    found = _EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise ValidationError(
            f"cannot tell the format of {path.name} from its extension: name it .csv, .jsonl or .parquet, "
            "or pass --format"
        )
    return found


def read_rows(path: Path, fmt: str, progress: Progress | None = None) -> Iterator[RawRow]:
    """The rows of ``path`` in ``fmt``. Raises ``ValidationError`` before the first row when the file is
    missing or not ``fmt`` at all (nothing has been read into the store then)."""
    if not path.is_file():
        raise ValidationError(f"{path} is not a file")
    if fmt == "csv":
        return _csv_rows(path, progress)
    if fmt == "jsonl":
        return _jsonl_rows(path, progress)
    if fmt == "parquet":
        return _parquet_rows(path, progress)
    raise ValidationError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(0, io.SEEK_END)
        if f.tell() == 0:
            return True
        f.seek(-1, io.SEEK_END)
        return f.read(1) in (b"\n", b"\r")


# CSV ---------------------------------------------------------------------------------------------
def _csv_header(cells: list[str], name: str) -> list[tuple[str, Any]]:
    """What each column holds: ("field", name), ("credit", (n, key)), ("parent", (n, key)), ("consent", use)."""
    spec: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for raw in cells:
        cell = raw.strip()
        if cell in seen:
            raise ValidationError(f"{name} is not a collection CSV: column {cell!r:.60} appears twice")
        seen.add(cell)
        if cell in SCALAR_FIELDS:
            spec.append(("field", cell))
        elif (m := _CSV_CREDIT.fullmatch(cell)) is not None:
            spec.append(("credit", (int(m.group(1)), m.group(2))))
        elif (m := _CSV_PARENT.fullmatch(cell)) is not None:
            spec.append(("parent", (int(m.group(1)), "share" if m.group(2) else "parent")))
        elif (m := _CSV_CONSENT.fullmatch(cell)) is not None and m.group(1) in USES:
            spec.append(("consent", m.group(1)))
        else:
            raise ValidationError(
                f"{name} is not a collection CSV (schema {SCHEMA_VERSION}): unknown column {cell!r:.60}; the "
                f"columns are {', '.join(SCALAR_FIELDS)}, creditN_name|person|role|weight, parentN, "
                "parentN_share and consent_<use>"
            )
    if "content" not in seen and "work" not in seen:
        raise ValidationError(
            f"{name} is not a collection CSV: its header has neither a content nor a work column "
            f"(read: {', '.join(c.strip() for c in cells)[:200]})"
        )
    return spec


def _csv_record(spec: list[tuple[str, Any]], cells: list[str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    credits: dict[int, dict[str, str]] = {}
    parents: dict[int, dict[str, str]] = {}
    consent: dict[str, str] = {}
    for (what, key), raw in zip(spec, cells):
        value = raw.strip()
        if not value:
            continue
        if what == "field":
            fields[key] = value
        elif what == "credit":
            credits.setdefault(key[0], {})[key[1]] = value
        elif what == "parent":
            parents.setdefault(key[0], {})[key[1]] = value
        else:
            consent[key] = value
    fields["credits"] = [credits[n] for n in sorted(credits)]
    fields["lineage"] = [parents[n] for n in sorted(parents)]
    fields["consent"] = consent
    return fields


def _csv_rows(path: Path, progress: Progress | None) -> Iterator[RawRow]:
    total = path.stat().st_size
    ends_cleanly = _ends_with_newline(path)
    binary = path.open("rb")
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
    try:
        reader = csv.reader(text, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise ValidationError(f"{path.name} is empty: no CSV header") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ValidationError(f"{path.name} is not a CSV file ({_why(exc)})") from None
        if any("\x00" in c for c in header):
            raise ValidationError(f"{path.name} is not a CSV file (it holds NUL bytes)")
        spec = _csv_header(header, path.name)
    except BaseException:
        text.close()
        raise
    return _csv_records(reader, text, binary, spec, total, ends_cleanly, progress)


def _next_cells(reader: Any) -> tuple[list[str] | None, str | None, bool]:
    """(cells, problem, ended): the next record, why it could not be read, or that the file has ended."""
    try:
        return next(reader), None, False
    except StopIteration:
        return None, None, True
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text ({_why(exc)}); the rest of the file is not read", False
    except csv.Error as exc:
        tail = " (the file ends mid-row: truncated?)" if "end of data" in str(exc) else ""
        return None, f"not a CSV record: {_why(exc)}{tail}", False


def _csv_records(
    reader: Any, text: io.TextIOWrapper, binary: IO[bytes], spec: list[tuple[str, Any]], total: int,
    ends_cleanly: bool,
    progress: Progress | None,
) -> Iterator[RawRow]:  # fmt: skip
    number = 0
    with text:
        ahead = _next_cells(reader)
        while not ahead[2]:
            (cells, problem, _), ahead = ahead, _next_cells(reader)  # one record ahead: is this the last?
            if progress is not None:
                progress(min(binary.tell(), total), total)
            if cells is not None and not any(c.strip() for c in cells):
                continue  # a blank line is not a row
            number += 1
            if problem is not None or cells is None:
                yield RawRow(number, None, problem or "not a CSV record")
                if problem is not None and problem.startswith("not UTF-8"):
                    break
            elif sum(map(len, cells)) > ROW_BYTES_MAX:
                yield RawRow(number, None, f"the row is longer than ROW_BYTES_MAX={ROW_BYTES_MAX} characters")
            elif len(cells) < len(spec):
                tail = " (the file ends mid-row: truncated?)" if ahead[2] and not ends_cleanly else ""
                yield RawRow(number, None, f"missing columns: the row has {len(cells)} of {len(spec)} cells{tail}")
            elif len(cells) > len(spec):
                yield RawRow(number, None, f"the row has {len(cells)} cells, more than the header's {len(spec)}")
            else:
                yield RawRow(number, _csv_record(spec, cells))


# JSON Lines ----------------------------------------------------------------------------------------
def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _json_object(line: bytes) -> dict[str, Any]:
    value = json.loads(line.decode("utf-8"), parse_float=Decimal, parse_constant=_reject_constant)
    if not isinstance(value, dict):
        raise ValueError(f"a JSON {type(value).__name__}, not an object")
    return value


def _jsonl_rows(path: Path, progress: Progress | None) -> Iterator[RawRow]:
    f = path.open("rb")
    try:
        first = f.read(4)
        if first.startswith(b"PAR1") or b"\x00" in first:
            raise ValidationError(f"{path.name} is not JSON Lines (it holds binary data)")
        f.seek(0)
        if f.read(3) != b"\xef\xbb\xbf":
            f.seek(0)
        line = b""
        while not line.strip():
            line = f.readline(ROW_BYTES_MAX + 1)
            if not line:
                raise ValidationError(f"{path.name} is empty: no JSON Lines rows")
        try:
            _json_object(line)
        except (ValueError, UnicodeDecodeError) as exc:
            if line.endswith(b"\n"):
                raise ValidationError(
                    f"{path.name} is not JSON Lines: its first line is not a JSON object ({_why(exc)})"
                ) from None
        f.seek(0)
        if f.read(3) != b"\xef\xbb\xbf":
            f.seek(0)
    except BaseException:
        f.close()
        raise
    return _jsonl_records(f, path.stat().st_size, progress)


def _jsonl_records(f: io.BufferedReader, total: int, progress: Progress | None) -> Iterator[RawRow]:
    number = 0
    with f:
        while True:
            line = f.readline(ROW_BYTES_MAX + 1)
            if not line:
                break
            if progress is not None:
                progress(f.tell(), total)
            if len(line) > ROW_BYTES_MAX and not line.endswith(b"\n"):
                number += 1
                while line and not line.endswith(b"\n"):
                    line = f.readline(ROW_BYTES_MAX + 1)
                yield RawRow(number, None, f"the line is longer than ROW_BYTES_MAX={ROW_BYTES_MAX} bytes")
                continue
            if not line.strip():
                continue
            number += 1
            try:
                fields = _json_object(line)
            except (ValueError, UnicodeDecodeError) as exc:
                tail = "" if line.endswith(b"\n") or f.peek(1) else " (the file ends mid-row: truncated?)"
                yield RawRow(number, None, f"not a JSON object: {_why(exc)}{tail}")
                continue
            yield RawRow(number, fields)


# Parquet -------------------------------------------------------------------------------------------
def _parquet_rows(path: Path, progress: Progress | None) -> Iterator[RawRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise ValidationError(f"{path.name} is not a readable Parquet file ({_why(exc)})") from None
    names = parquet.schema_arrow.names
    unknown = [n for n in names if n not in SCALAR_FIELDS and n not in LIST_FIELDS]
    if unknown:
        parquet.close()
        raise ValidationError(
            f"{path.name} is not a collection Parquet file (schema {SCHEMA_VERSION}): unknown column "
            f"{unknown[0]!r:.60}; the columns are {', '.join(SCALAR_FIELDS + LIST_FIELDS)}"
        )
    if "content" not in names and "work" not in names:
        parquet.close()
        raise ValidationError(
            f"{path.name} is not a collection Parquet file: it has neither a content nor a work column"
        )
    return _parquet_records(parquet, progress)


def _parquet_records(parquet: Any, progress: Progress | None) -> Iterator[RawRow]:
    import pyarrow as pa

    total = int(parquet.metadata.num_rows)
    number = 0
    try:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for record in batch.to_pylist():
                number += 1
                consent = record.get("consent")
                if isinstance(consent, list):  # a Parquet map arrives as (key, value) pairs
                    record["consent"] = dict(consent)
                yield RawRow(number, {k: v for k, v in record.items() if v is not None})
            if progress is not None:
                progress(number, total)
    except (pa.ArrowException, OSError) as exc:
        yield RawRow(number + 1, None, f"the Parquet data cannot be read from here on ({_why(exc)})")
    finally:
        parquet.close()


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


__all__ = [
    "CREDIT_KEYS",
    "FORMATS",
    "LINEAGE_KEYS",
    "LIST_FIELDS",
    "SCALAR_FIELDS",
    "SCHEMA_VERSION",
    "RawRow",
    "detect_format",
    "read_rows",
]
