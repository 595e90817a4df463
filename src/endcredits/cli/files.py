"""Reading user-supplied tables (CSV or Parquet) with their columns checked."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from endcredits.errors import ValidationError
from endcredits.limits import BATCH_SIZE_MAX


def read_rows(path: Path, required: Sequence[str], *, one_of: Sequence[str] = ()) -> list[dict[str, str]]:
    """Rows of a CSV or Parquet file as text, requiring ``required`` columns and one of ``one_of``."""
    if not path.exists():
        raise ValidationError(f"file {path} does not exist")
    if path.suffix == ".parquet":
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValidationError(f"{path} is not a readable Parquet file ({str(exc).splitlines()[0]})") from None
        columns = table.column_names
        rows = [{k: ("" if v is None else str(v)) for k, v in r.items()} for r in table.to_pylist()]
    else:
        try:
            with path.open(newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                columns = list(reader.fieldnames or [])
                rows = []
                for i, r in enumerate(reader):
                    if i >= BATCH_SIZE_MAX:
                        raise ValidationError(f"{path} has more than BATCH_SIZE_MAX={BATCH_SIZE_MAX} rows; split it")
                    if None in r or any(v is None for v in r.values()):
                        raise ValidationError(f"{path} row {i + 2} has a different number of fields than the header")
                    rows.append(r)
        except UnicodeDecodeError:
            raise ValidationError(f"{path} is not UTF-8 text") from None
    missing = [c for c in required if c not in columns]
    if missing:
        raise ValidationError(f"{path} is missing columns {', '.join(missing)} (it has {', '.join(columns) or 'none'})")
    if one_of and not any(c in columns for c in one_of):
        raise ValidationError(f"{path} needs one of the columns {', '.join(one_of)}")
    return rows
