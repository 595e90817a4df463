"""Per-line evidence as Parquet files, one per accrual batch and period, under ``evidence/period=YYYY-MM/``.

A line is (output, attributed work, source work, payee, account, role, amount). The ledger posts only
per-account aggregates; these files hold every line behind them, and ``verify`` re-adds them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from endcredits.errors import EvidenceError

EVIDENCE_SCHEMA = pa.schema([
    ("batch_event_id", pa.string()),
    ("output_id", pa.string()),
    ("model_id", pa.string()),
    ("occurred_at", pa.string()),
    ("attributed_work", pa.string()),
    ("source_work", pa.string()),
    ("payee", pa.string()),
    ("account", pa.string()),
    ("role", pa.string()),
    ("amount_microunits", pa.int64()),
    ("amount_subunits", pa.int64()),
])


def evidence_path(data_dir: Path, period: str, event_id: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", event_id)
    digest = hashlib.sha256(event_id.encode()).hexdigest()[:12]
    return data_dir / "evidence" / f"period={period}" / f"{safe}-{digest}.parquet"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_evidence(path: Path, table: pa.Table) -> str:
    """Write the table durably (fsync) and return the file's SHA-256. Refuses to overwrite."""
    if table.schema != EVIDENCE_SCHEMA:
        raise EvidenceError(f"evidence table has schema {table.schema}, expected the evidence schema")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raise EvidenceError(f"evidence file {path} already exists; it is never overwritten")
    tmp = path.with_suffix(".partial")
    pq.write_table(table, tmp, compression="zstd", row_group_size=1 << 20)
    with tmp.open("rb") as f:
        import os

        os.fsync(f.fileno())
    tmp.rename(path)
    return file_sha256(path)


def read_evidence(path: Path, *, expected_sha256: str | None = None, columns: list[str] | None = None) -> pa.Table:
    """Read one evidence file, checking its hash when given. Truncated or altered files raise."""
    if not path.exists():
        raise EvidenceError(f"evidence file {path} is missing")
    if expected_sha256 is not None and file_sha256(path) != expected_sha256:
        raise EvidenceError(f"evidence file {path} does not match its recorded SHA-256: it was altered or truncated")
    try:
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise EvidenceError(f"evidence file {path} is unreadable ({str(exc).splitlines()[0]}); restore it from backup") from None
    if columns is None and table.schema != EVIDENCE_SCHEMA:
        raise EvidenceError(f"evidence file {path} has an unexpected schema")
    return table


def iter_period_files(data_dir: Path, period: str) -> Iterator[Path]:
    yield from sorted((data_dir / "evidence" / f"period={period}").glob("*.parquet"))
