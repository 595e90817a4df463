"""Per-line evidence as Parquet files, one per accrual batch and period, under ``evidence/period=YYYY-MM/``.

A line is (output, its model, time and revenue, attributed work, source work, payee, account, role,
amount). The ledger posts only per-account aggregates and keeps only each output's id (to pay it once);
these files hold every line behind them, and ``verify`` re-adds them. Files are 0600 in 0700 folders.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from endcredits.errors import EvidenceError
from endcredits.store.files import private_dir, write_private

_CODED = pa.dictionary(pa.int32(), pa.string())
EVIDENCE_SCHEMA = pa.schema(
    [
        ("batch_event_id", _CODED),
        ("output_id", _CODED),
        ("model_id", _CODED),
        ("occurred_at", _CODED),
        ("revenue_microunits", pa.int64()),  # the output's revenue, on each of its lines
        ("attributed_work", _CODED),
        ("source_work", _CODED),
        ("payee", _CODED),
        ("account", _CODED),
        ("role", _CODED),
        ("amount_microunits", pa.int64()),
        ("amount_subunits", pa.int64()),
    ]
)
"""Text columns are dictionary-coded: a line repeats its output, payee and works many times."""

EVIDENCE_SCHEMA_V1 = EVIDENCE_SCHEMA.remove(EVIDENCE_SCHEMA.get_field_index("revenue_microunits"))
"""Files written before revenue moved out of the ``outputs`` table (migration 0002): read as they are."""

_DICTIONARY_COLUMNS = [f.name for f in EVIDENCE_SCHEMA if pa.types.is_dictionary(f.type)]


ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"


def use_system_allocator() -> str:
    """Let Arrow allocate with the C library's ``malloc`` in this process, unless ``ARROW_DEFAULT_MEMORY_POOL``
    names a pool; returns the pool's name. Called by the ledger benchmark, never on import; the ``endcredits``
    command sets ``ARROW_DEFAULT_MEMORY_POOL=system`` instead, before Arrow loads (``cli.app.main``).

    Why: with Arrow's default, mimalloc, the first 10^6-line evidence file of a process took 0.35 s to
    encode against 0.15 s for later ones; a one-shot ``endcredits accrue`` only ever writes a first one.
    With ``malloc`` the first costs what later ones do (measured in docs/benchmarks.md)."""
    if not os.environ.get(ARROW_POOL_ENV):
        pa.set_memory_pool(pa.system_memory_pool())
    return str(pa.default_memory_pool().backend_name)


def coded(indices: npt.NDArray[np.int64], values: list[str] | pa.Array) -> pa.DictionaryArray:
    """A dictionary-coded text column from int codes (-1 is the empty string) and their values (a list,
    or a string array converted once by the caller)."""
    idx = np.asarray(indices, dtype=np.int64)
    text = values if isinstance(values, pa.Array) else pa.array(values, pa.string())
    if len(idx) and idx.min() < 0:
        text = pa.concat_arrays([text, pa.array([""], pa.string())])
        idx = np.where(idx < 0, len(text) - 1, idx)
    return pa.DictionaryArray.from_arrays(pa.array(idx.astype(np.int32)), text)


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
    return prepare_evidence(path, table, replace_orphan=replace_orphan)()


def prepare_evidence(path: Path, table: pa.Table, *, replace_orphan: bool = False) -> Callable[[], str]:
    """Check ``table`` and ``path`` now (as ``write_evidence``) and return the call that writes the file
    and returns its SHA-256. That call is a few long steps that release the GIL (encode, hash, write,
    fsync), so it runs on another thread beside Python work without waiting on the GIL between steps."""
    if table.schema != EVIDENCE_SCHEMA:
        raise EvidenceError(f"evidence table has schema {table.schema}, expected the evidence schema")
    private_dir(path.parent)
    if path.exists() and not replace_orphan:
        raise EvidenceError(f"evidence file {path} already exists; it is never overwritten")
    tmp = path.with_suffix(".partial")

    def write() -> str:
        # Encoded in memory, then hashed and written whole: no reading the file back to hash it.
        # lz4 without column statistics: 2.6x faster to write than zstd here, and the files are read whole.
        # Parquet dictionaries only for the coded text columns: on the amounts (10^6 distinct values) the
        # writer would build one and throw it away.
        sink = pa.BufferOutputStream()
        pq.write_table(
            table,
            sink,
            compression="lz4",
            row_group_size=1 << 20,
            use_dictionary=_DICTIONARY_COLUMNS,
            write_statistics=False,
        )
        data = memoryview(sink.getvalue())
        sha = hashlib.sha256(data).hexdigest()
        write_private(tmp, data)  # 0600: the lines name people and what they were paid
        tmp.replace(path)
        _fsync_dir(path.parent)  # the rename itself is durable before the batch row that names the file
        return sha

    return write


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_evidence(path: Path, *, expected_sha256: str | None = None, columns: list[str] | None = None) -> pa.Table:
    """Read one evidence file, checking its hash when given. Truncated or altered files raise."""
    if not path.exists():
        raise EvidenceError(f"evidence file {path} is missing")
    if expected_sha256 is not None and file_sha256(path) != expected_sha256:
        raise EvidenceError(f"evidence file {path} does not match its recorded SHA-256: it was altered or truncated")
    try:
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise EvidenceError(
            f"evidence file {path} is unreadable ({str(exc).splitlines()[0]}); restore it from backup"
        ) from None
    if columns is None and table.schema != EVIDENCE_SCHEMA and table.schema != EVIDENCE_SCHEMA_V1:
        raise EvidenceError(f"evidence file {path} has an unexpected schema")
    return table
