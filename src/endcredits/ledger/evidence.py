"""Per-line evidence as Parquet files, one per accrual batch and period, under ``evidence/period=YYYY-MM/``.

A line is (output, its model, time and revenue, attributed work, source work, payee, account, role,
amount). The ledger posts only per-account aggregates and keeps only each output's id (to pay it once);
these files hold every line behind them, and ``verify`` re-adds them. A group paid on a recorded run per
work keeps each output's pool, each payee's exact total over the batch and the credit shares it used
instead (``PAYEE_EVIDENCE_SCHEMA``, ``per_batch_table``): its lines, and so each output's part for each
payee, are re-derived on demand (``ledger.evidence_lines``). Files are 0600 in 0700 folders.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from endcredits.errors import EvidenceError
from endcredits.limits import SUBUNIT_BITS, SUBUNITS_PER_MICROUNIT
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

PAYEE_EVIDENCE_SCHEMA = EVIDENCE_SCHEMA.append(pa.field("share", _CODED))
"""Evidence of batches paid on a recorded attribution run, per work. Works, role and ``share`` are empty
but on the share rows. Rows, by which of ``output_id``, ``payee`` and ``share`` are set:
- an output (``output_id`` alone; written since evidence is kept per batch): its model, time, revenue
  and pool (``amount_microunits``, whole);
- a payee's total (``payee`` alone; kept per batch): the exact sum of the payee's lines over the whole
  group (whole microunits, then the fraction below 2^32) and the account it went to;
- an output's part for one payee (``output_id`` and ``payee``; files kept per output and payee, read as
  they are): the exact sum of that payee's lines in that output and the account;
- a work's recorded credit share (``share``): ``share`` (``n/d``) of one unit of ``attributed_work``'s
  residual goes to ``payee`` for ``role`` on ``source_work`` (empty: the attributed work itself).
The per-work lines are re-derived from these shares and the run's scores (``ledger.evidence_lines``)."""

_DICTIONARY_COLUMNS = [f.name for f in PAYEE_EVIDENCE_SCHEMA if pa.types.is_dictionary(f.type)]


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
    if table.schema != EVIDENCE_SCHEMA and table.schema != PAYEE_EVIDENCE_SCHEMA:
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
            use_dictionary=[c for c in _DICTIONARY_COLUMNS if c in table.column_names],
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
    if columns is None and table.schema not in (EVIDENCE_SCHEMA, EVIDENCE_SCHEMA_V1, PAYEE_EVIDENCE_SCHEMA):
        raise EvidenceError(f"evidence file {path} has an unexpected schema")
    return table


def kept_per_payee(table: pa.Table) -> bool:
    """Whether an evidence table keeps its amounts per payee, per output and payee or per batch
    (``kept_per_batch``): its lines are re-derived."""
    return "share" in table.column_names


def kept_per_batch(table: pa.Table) -> bool:
    """Whether an evidence table keeps its amounts per payee over the whole group and each output's pool (its
    lines, and each output's part for each payee, are re-derived)."""
    return kept_per_payee(table) and bool(table.num_rows) and bool(pc.any(_blank(table, "payee", "share")).as_py())


def _blank(table: pa.Table, *names: str) -> pa.ChunkedArray:
    """Per row, whether every column of ``names`` is empty."""
    masks = [pc.equal(table[n].cast(pa.string()), "") for n in names]
    out = masks[0]
    for m in masks[1:]:
        out = pc.and_(out, m)
    return out


def _as_lines(rows: pa.Table) -> pa.Table:
    return pa.table(
        [_recoded(rows[f.name]) if pa.types.is_dictionary(f.type) else rows[f.name] for f in EVIDENCE_SCHEMA],
        schema=EVIDENCE_SCHEMA,
    )


def payee_rows(table: pa.Table) -> pa.Table:
    """The money rows of an evidence table, in the columns of ``EVIDENCE_SCHEMA`` (text re-coded, so no
    dictionary holds a value only other rows use): its lines (line layout), its parts per output and payee,
    or (kept per batch) each payee's total over the group, with ``output_id`` empty."""
    if not kept_per_payee(table):
        return table
    money = pc.and_(_blank(table, "share"), pc.invert(_blank(table, "payee")))
    return _as_lines(table.filter(money))


def output_rows(table: pa.Table) -> pa.Table:
    """The outputs of an evidence table kept per batch (``EVIDENCE_SCHEMA``; ``amount_microunits`` is the
    output's pool, payee and works empty), in the order the batch listed them; empty for other layouts."""
    if not kept_per_payee(table):
        return EVIDENCE_SCHEMA.empty_table()
    return _as_lines(table.filter(_blank(table, "payee", "share")))


def share_rows(table: pa.Table) -> dict[str, list[tuple[str, str, str, Fraction]]]:
    """Per attributed work, its recorded shares as (payee, source work, role, share), in file order."""
    if not kept_per_payee(table):
        return {}
    rows = table.filter(pc.not_equal(table["share"].cast(pa.string()), ""))
    out: dict[str, list[tuple[str, str, str, Fraction]]] = {}
    columns = [rows[c].cast(pa.string()).to_pylist() for c in ("attributed_work", "payee", "source_work", "role")]
    for work, payee, source, role, share in zip(*columns, rows["share"].cast(pa.string()).to_pylist(), strict=True):
        out.setdefault(work, []).append((payee, source or work, role, Fraction(share)))
    return out


def _recoded(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return pa.chunked_array([column.cast(pa.string()).combine_chunks().dictionary_encode()], type=_CODED)


def _exact_sums(lines: pa.Table, codes: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], ...]:
    """Per distinct code, in code order: its first line and the exact sum of its lines (whole microunits, then
    the fraction below 2^32). The caller bounds the sums below 2^63 (lines < 2^31, so the fractions are)."""
    keys, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    micro = np.zeros(len(keys), dtype=np.int64)
    sub = np.zeros(len(keys), dtype=np.int64)  # < lines x 2^32
    np.add.at(micro, inverse, lines["amount_microunits"].to_numpy())
    np.add.at(sub, inverse, lines["amount_subunits"].to_numpy())
    micro += sub >> SUBUNIT_BITS
    sub &= SUBUNITS_PER_MICROUNIT - 1
    return first, micro, sub


def _money_rows(lines: pa.Table, sums: tuple[npt.NDArray[np.int64], ...], blank_too: tuple[str, ...]) -> pa.Table:
    """Rows of ``PAYEE_EVIDENCE_SCHEMA`` from ``_exact_sums``: each key's first line with its sum, the works,
    role and share left empty, and ``blank_too`` as well (text empty, numbers 0)."""
    first, micro, sub = sums
    kept = lines.take(pa.array(first, pa.int64()))
    blank = coded(np.full(len(first), -1, dtype=np.int64), [])
    columns: dict[str, pa.Array | pa.ChunkedArray] = {name: kept[name] for name in EVIDENCE_SCHEMA.names}
    columns |= {n: blank for n in ("attributed_work", "source_work", "role", "share", *blank_too)}
    if "revenue_microunits" in blank_too:
        columns["revenue_microunits"] = pa.array(np.zeros(len(first), dtype=np.int64), pa.int64())
    columns |= {"amount_microunits": pa.array(micro, pa.int64()), "amount_subunits": pa.array(sub, pa.int64())}
    return pa.table([columns[n] for n in PAYEE_EVIDENCE_SCHEMA.names], schema=PAYEE_EVIDENCE_SCHEMA)


def _codes(lines: pa.Table, name: str) -> tuple[npt.NDArray[np.int64], int]:
    column = lines[name].combine_chunks()
    return column.indices.to_numpy(zero_copy_only=False).astype(np.int64), max(len(column.dictionary), 1)


def per_payee_table(lines: pa.Table, shares: Mapping[str, Sequence[tuple[str, str, str, Fraction]]]) -> pa.Table:
    """The evidence kept per output and payee for ``lines`` (``EVIDENCE_SCHEMA``): one row per output and payee
    with the exact sum of its lines (each at most the output's pool, <= 2^62), then the recorded shares. Kept
    for a group whose payee totals over the batch would not fit 63 bits (``per_batch_table``)."""
    (out_codes, _), (payee_codes, payees_n) = _codes(lines, "output_id"), _codes(lines, "payee")
    parts = _money_rows(lines, _exact_sums(lines, out_codes * payees_n + payee_codes), ())
    return pa.concat_tables([parts, _share_table(shares)]).combine_chunks()


def per_batch_table(lines: pa.Table, shares: Mapping[str, Sequence[tuple[str, str, str, Fraction]]]) -> pa.Table:
    """The evidence kept per batch for ``lines`` (``EVIDENCE_SCHEMA``, one group's lines): one row per output
    (its model, time, revenue and pool, the sum of its lines), one row per payee (its account and the exact
    sum of its lines over the group), then one row per recorded work share. Rows grow with outputs + payees
    + shares, not outputs x payees. When the payees' sums could reach 2^63 (pools near the limits), it keeps
    a row per output and payee instead (``per_payee_table``), whose sums are bounded by one output's pool."""
    outputs = _money_rows(lines, _exact_sums(lines, _codes(lines, "output_id")[0]), ("payee", "account"))
    if sum(int(m) for m in outputs["amount_microunits"].to_numpy()) >= 2**62:
        return per_payee_table(lines, shares)
    per_output = ("output_id", "model_id", "occurred_at", "revenue_microunits")
    payees = _money_rows(lines, _exact_sums(lines, _codes(lines, "payee")[0]), per_output)
    return pa.concat_tables([outputs, payees, _share_table(shares)]).combine_chunks()


def _share_table(shares: Mapping[str, Sequence[tuple[str, str, str, Fraction]]]) -> pa.Table:
    """One row per recorded work share, works in sorted order, each work's shares as recorded; the source
    work is left empty where it is the attributed work itself (most works: no lineage)."""
    rows = [(w, s[0], "" if s[1] == w else s[1], *s[2:]) for w in sorted(shares) for s in shares[w]]
    none = coded(np.full(len(rows), -1, dtype=np.int64), [])
    zero = pa.array(np.zeros(len(rows), dtype=np.int64), pa.int64())

    def text(i: int) -> pa.DictionaryArray:
        return pa.array([str(r[i]) for r in rows], pa.string()).dictionary_encode()

    columns = {name: none for name in PAYEE_EVIDENCE_SCHEMA.names}
    columns |= {"revenue_microunits": zero, "amount_microunits": zero, "amount_subunits": zero}
    columns |= {"attributed_work": text(0), "payee": text(1), "source_work": text(2), "role": text(3), "share": text(4)}
    return pa.table([columns[n] for n in PAYEE_EVIDENCE_SCHEMA.names], schema=PAYEE_EVIDENCE_SCHEMA)
