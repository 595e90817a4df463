"""Per-line evidence as Parquet files, one per accrual batch and period, under ``evidence/period=YYYY-MM/``.

A line is (output, attributed work, source work, payee, account, role, amount). The ledger posts only
per-account aggregates; these files hold every line behind them, and ``verify`` re-adds them.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from endcredits.errors import EvidenceError

_CODED = pa.dictionary(pa.int32(), pa.string())
EVIDENCE_SCHEMA = pa.schema([
    ("batch_event_id", _CODED),
    ("output_id", _CODED),
    ("model_id", _CODED),
    ("occurred_at", _CODED),
    ("attributed_work", _CODED),
    ("source_work", _CODED),
    ("payee", _CODED),
    ("account", _CODED),
    ("role", _CODED),
    ("amount_microunits", pa.int64()),
    ("amount_subunits", pa.int64()),
])
"""Text columns are dictionary-coded: a line repeats its output, payee and work many times."""


def coded(indices: npt.NDArray[np.int64], values: list[str]) -> pa.DictionaryArray:
    """A dictionary-coded text column from int codes (-1 is the empty string) and their values."""
    idx = np.asarray(indices, dtype=np.int64)
    if len(idx) and idx.min() < 0:
        values = list(values) + [""]
        idx = np.where(idx < 0, len(values) - 1, idx)
    return pa.DictionaryArray.from_arrays(pa.array(idx.astype(np.int32)), pa.array(values, pa.string()))


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


def write_evidence(path: Path, table: pa.Table, *, replace_orphan: bool = False) -> str:
    """Write the table durably (fsync) and return the file's SHA-256.

    Refuses to overwrite, except an orphan: a file left by an attempt whose transaction never committed,
    which only the caller can know (it holds the write lock and found no batch row for this path).
    """
    if table.schema != EVIDENCE_SCHEMA:
        raise EvidenceError(f"evidence table has schema {table.schema}, expected the evidence schema")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not replace_orphan:
        raise EvidenceError(f"evidence file {path} already exists; it is never overwritten")
    tmp = path.with_suffix(".partial")
    # lz4 without column statistics: 2.6x faster to write than zstd here, and the files are read whole.
    pq.write_table(table, tmp, compression="lz4", row_group_size=1 << 20, use_dictionary=True, write_statistics=False)
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    tmp.replace(path)
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
