"""Accrual transfers as columnar segments: one row per transfer, read through until folded.

An accrual of 10^6 line items over 10^5 payees posts about 10^5 legs and changes 10^5 balances and
carried fractions. Written as rows, that is a leg, an account and a carry per payee: on SQLite the
rows alone took 0.69 s of the 1.0 s that 10^6 line items/s allows (``benchmarks/sqlite_floor.py``).
Here the transfer's legs (account key, amount) and its payees' new carries are two Arrow IPC blobs
in one ``ledger_segments`` row, written with one INSERT.

The ledger is then the row tables (``accounts`` with their balances, ``legs`` of every other
transfer, ``carries``) plus the segments above the fold watermark, the *pending* ones. Readers read
through them (``pending_deltas``, ``pending_carries``); ``ledger.records.fold_pending`` writes pending
segments into the row tables and records the watermark in ``ledger_folds``. A segment is never
changed or removed: it stays the record of its transfer's legs, which ``verify`` re-adds.

This module encodes, decodes and reads segments; the ledger's rules (when to fold, balance checks)
live in ``ledger.records``.
"""

from __future__ import annotations

import functools
import hashlib
import weakref
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select

from endcredits.errors import LedgerError
from endcredits.ledger import LegColumns, parse_account_key
from endcredits.store.schema import ledger_folds, ledger_segments

if TYPE_CHECKING:  # pyarrow is imported where a segment is encoded or decoded: a plain read starts fast
    import numpy as np
    import numpy.typing as npt
    import pyarrow as pa

_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


@functools.cache
def segment_schemas() -> dict[str, pa.Schema]:
    """The segment blobs' Arrow schemas, by name: ``LEGS_SCHEMA``, ``LEGS_BIG_SCHEMA`` (legs whose amounts
    do not all fit in int64 keep them as decimal text: amounts reach 10^30) and ``CARRIES_SCHEMA``."""
    import pyarrow as pa

    return {
        "LEGS_SCHEMA": pa.schema([("account", pa.string()), ("amount_microunits", pa.int64())]),
        "LEGS_BIG_SCHEMA": pa.schema([("account", pa.string()), ("amount_microunits", pa.string())]),
        "CARRIES_SCHEMA": pa.schema([("payee", pa.string()), ("subunits", pa.int64())]),
    }


def __getattr__(name: str) -> Any:
    """``segments.LEGS_SCHEMA`` and the other two still resolve, built on first use."""
    if name in ("LEGS_SCHEMA", "LEGS_BIG_SCHEMA", "CARRIES_SCHEMA"):
        return segment_schemas()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def ipc_bytes(table: pa.Table, compression: str | None = None) -> bytes:
    """``table`` as an Arrow IPC stream, its buffers compressed by ``compression`` ("lz4", "zstd") if given."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression=compression)) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def read_ipc(blob: bytes, transfer_id: int, what: str, schemas: Sequence[pa.Schema]) -> pa.Table:
    import pyarrow as pa

    try:
        table = pa.ipc.open_stream(pa.py_buffer(blob)).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise LedgerError(
            f"segment of transfer {transfer_id}: its {what} are unreadable ({str(exc).splitlines()[0]})"
        ) from None
    if not any(table.schema.equals(s) for s in schemas):
        raise LedgerError(f"segment of transfer {transfer_id}: its {what} have an unexpected schema")
    return table


SEGMENT_COMPRESSION = "lz4"
"""How a segment's blobs are compressed (Arrow IPC buffer compression, read back by any reader): an accrual
that pays 3 x 10^5 new people writes 10.9 MB of legs and 7.4 MB of carries as they are, 4.6 and 4.7 MB so,
for 10-25 ms of LZ4 each; every byte is written, hashed, synced and read by the fold after. Segments written
before are read as they are."""


def encode_legs(keys: Sequence[str] | pa.Array, amounts: Sequence[int] | npt.NDArray[np.int64]) -> bytes:
    """Legs as Arrow IPC: int64 amounts, or decimal text when any is beyond int64."""
    import pyarrow as pa

    if isinstance(keys, pa.Array):  # columnar legs (``LegColumns``): int64 already
        table = pa.table([keys, pa.array(amounts, pa.int64())], schema=segment_schemas()["LEGS_SCHEMA"])
    elif _I64_MIN <= min(amounts, default=0) and max(amounts, default=0) <= _I64_MAX:
        table = pa.table(
            [pa.array(keys, pa.string()), pa.array(amounts, pa.int64())], schema=segment_schemas()["LEGS_SCHEMA"]
        )
    else:
        table = pa.table(
            [pa.array(keys, pa.string()), pa.array([str(a) for a in amounts], pa.string())],
            schema=segment_schemas()["LEGS_BIG_SCHEMA"],
        )
    return ipc_bytes(table, SEGMENT_COMPRESSION)


def encode_carries(payees: Sequence[str] | pa.Array, subunits: Sequence[int] | npt.NDArray[np.int64]) -> bytes:
    import pyarrow as pa

    return ipc_bytes(
        pa.table(
            [pa.array(payees, pa.string()), pa.array(subunits, pa.int64())], schema=segment_schemas()["CARRIES_SCHEMA"]
        ),
        SEGMENT_COMPRESSION,
    )


def segment_sha256(legs_blob: bytes, carries_blob: bytes) -> str:
    """What the transfer's audit entry records for its segment: both blobs, each length-prefixed."""
    h = hashlib.sha256()
    for blob in (legs_blob, carries_blob):
        h.update(len(blob).to_bytes(8, "big"))
        h.update(blob)
    return h.hexdigest()


@dataclass(frozen=True)
class Segment:
    """One accrual transfer's legs and the carries it left, decoded."""

    transfer_id: int
    currency: str
    accounts: pa.Array  # string
    amounts: pa.Array  # int64, or decimal text beyond int64
    payees: pa.Array | None  # string; None when carries were not asked for
    subunits: pa.Array | None  # int64
    sha256: str

    def amount_list(self) -> list[int]:
        """The amounts as Python ints, exact at any size."""
        import pyarrow as pa

        values = self.amounts.to_pylist()
        return values if pa.types.is_integer(self.amounts.type) else [int(v) for v in values]

    def legs(self) -> dict[str, int]:
        return dict(zip(self.accounts.to_pylist(), self.amount_list()))


_WRITTEN: weakref.WeakKeyDictionary[Connection, set[int]] = weakref.WeakKeyDictionary()
"""Per connection, the segments its transaction wrote (``Store.write`` opens a Connection per transaction)."""


def insert_segment(
    conn: Connection,
    transfer_id: int,
    currency: str,
    legs: Mapping[str, int],
    carries: tuple[Sequence[str] | pa.Array, Sequence[int] | npt.NDArray[np.int64]],
) -> str:
    """Write one segment inside the caller's transaction; returns its SHA-256 (``segment_sha256``)."""
    if isinstance(legs, LegColumns):
        legs_blob = encode_legs(legs.accounts, legs.amounts)
    else:
        legs_blob = encode_legs(list(legs), list(legs.values()))
    carries_blob = encode_carries(*carries)
    sha = segment_sha256(legs_blob, carries_blob)
    _WRITTEN.setdefault(conn, set()).add(transfer_id)  # a Connection is one transaction (Store.write)
    conn.execute(
        ledger_segments.insert().values(
            transfer_id=transfer_id,
            currency=currency,
            leg_count=len(legs),
            carry_count=len(carries[0]),
            legs_arrow=legs_blob,
            carries_arrow=carries_blob,
            sha256=sha,
        )
    )
    return sha


def fold_watermark(conn: Connection) -> int:
    """The id of the last transfer folded into the row tables (0 before the first fold)."""
    value = conn.execute(select(func.max(ledger_folds.c.through_transfer_id))).scalar()
    return int(value or 0)


def pending_size(conn: Connection) -> tuple[int, int]:
    """(segments, legs) above the fold watermark."""
    row = conn.execute(
        select(func.count(), func.coalesce(func.sum(ledger_segments.c.leg_count), 0)).where(
            ledger_segments.c.transfer_id > fold_watermark(conn)
        )
    ).one()
    return int(row[0]), int(row[1])


def iter_segments(
    conn: Connection,
    *,
    after: int | None = None,
    transfer_ids: Sequence[int] | None = None,
    carries: bool = False,
    currency: str | None = None,
) -> Iterator[Segment]:
    """Segments in transfer order: those above ``after`` (the pending ones when ``after`` is the
    watermark), or those of ``transfer_ids``, or every one. One row is decoded at a time."""
    for transfer_id in segment_ids(conn, after=after, transfer_ids=transfer_ids, currency=currency):
        yield read_segment(conn, transfer_id, carries=carries)


def read_segment(conn: Connection, transfer_id: int, *, carries: bool = False) -> Segment:
    """One segment, decoded; a blob that is not a segment's raises ``LedgerError`` naming the transfer."""
    names = ["currency", "sha256", "legs_arrow"] + (["carries_arrow"] if carries else [])
    currency, sha, legs_blob, *rest = _segment_row(conn, transfer_id, names)
    legs = read_ipc(
        legs_blob, transfer_id, "legs", (segment_schemas()["LEGS_SCHEMA"], segment_schemas()["LEGS_BIG_SCHEMA"])
    )
    payees = subunits = None
    if carries:
        table = read_ipc(rest[0], transfer_id, "carries", (segment_schemas()["CARRIES_SCHEMA"],))
        payees, subunits = table.column(0).combine_chunks(), table.column(1).combine_chunks()
    return Segment(
        transfer_id, currency, legs.column(0).combine_chunks(), legs.column(1).combine_chunks(), payees, subunits, sha
    )


def _segment_row(conn: Connection, transfer_id: int, names: Sequence[str]) -> tuple[Any, ...]:
    """The columns ``names`` of one segment row. On PostgreSQL through a binary cursor: a blob comes as its
    bytes, not as hex text twice its size to decode (2-3x faster for a 10^5-leg segment)."""
    row = binary_row(conn, f"SELECT {', '.join(names)} FROM ledger_segments WHERE transfer_id = {int(transfer_id)}")
    if row is None:
        raise LedgerError(f"no segment for transfer {transfer_id}")
    return row


def binary_row(conn: Connection, sql: str) -> tuple[Any, ...] | None:
    """The first row of ``sql``; on PostgreSQL through a binary cursor, so that a blob comes as its bytes."""
    if conn.dialect.name == "postgresql":
        driver: Any = conn.connection.driver_connection
        with driver.cursor(binary=True) as cur:
            cur.execute(sql)
            row = cur.fetchone()
    else:
        row = conn.exec_driver_sql(sql).fetchone()
    return None if row is None else tuple(row)


def iter_carries(
    conn: Connection, *, after: int, currency: str | None = None
) -> Iterator[tuple[str, pa.Array, pa.Array]]:
    """(currency, payees, subunits) of each segment above ``after``, in transfer order: only the carries
    blob is read."""
    for _, ccy, payees, subunits in segment_carries(conn, after=after, currency=currency):
        yield ccy, payees, subunits


def segment_carries(
    conn: Connection, *, after: int, currency: str | None = None
) -> Iterator[tuple[int, str, pa.Array, pa.Array]]:
    """(transfer id, currency, payees, subunits) of each segment above ``after`` (of ``currency`` alone when
    given), in transfer order: only the carries blob is read."""
    for transfer_id in segment_ids(conn, after=after, currency=currency):
        ccy, blob = _segment_row(conn, transfer_id, ["currency", "carries_arrow"])
        table = read_ipc(blob, transfer_id, "carries", (segment_schemas()["CARRIES_SCHEMA"],))
        yield transfer_id, ccy, table.column(0).combine_chunks(), table.column(1).combine_chunks()


def segment_sha_of(conn: Connection, transfer_id: int) -> str | None:
    """The SHA-256 of segment ``transfer_id``, or None where there is none."""
    row = conn.execute(select(ledger_segments.c.sha256).where(ledger_segments.c.transfer_id == transfer_id)).first()
    return None if row is None else str(row[0])


def written_in(conn: Connection) -> frozenset[int]:
    """The segments ``conn``'s open transaction wrote (``insert_segment``): not committed yet."""
    return frozenset(_WRITTEN.get(conn, ()))


def segment_ids(
    conn: Connection,
    *,
    after: int | None = None,
    transfer_ids: Sequence[int] | None = None,
    currency: str | None = None,
) -> list[int]:
    """Segments' transfer ids in order: those above ``after``, of ``transfer_ids``, of ``currency``, or all.
    Readers take the ids first, then one row at a time, so none holds more than one segment's blobs."""
    ids = select(ledger_segments.c.transfer_id).order_by(ledger_segments.c.transfer_id)
    if after is not None:
        ids = ids.where(ledger_segments.c.transfer_id > after)
    if transfer_ids is not None:
        ids = ids.where(ledger_segments.c.transfer_id.in_(list(transfer_ids)))
    if currency is not None:
        ids = ids.where(ledger_segments.c.currency == currency)
    return [int(t) for t in conn.execute(ids).scalars()]


def raw_segment_sha256(conn: Connection) -> Iterator[tuple[int, str, str]]:
    """(transfer id, recorded SHA-256, SHA-256 of the stored blobs) per segment, for ``verify``."""
    for transfer_id in segment_ids(conn):
        legs_blob, carries_blob, sha = _segment_row(conn, transfer_id, ["legs_arrow", "carries_arrow", "sha256"])
        yield transfer_id, sha, segment_sha256(bytes(legs_blob), bytes(carries_blob))


def _key_filter(
    accounts: pa.Array, kind: str | None, currency: str | None, holders: Collection[str] | None
) -> pa.Array:
    """The keys of ``accounts`` that may match, narrowed in Arrow; callers confirm each one exactly."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    masks = []
    if kind:
        masks.append(pc.starts_with(accounts, f"{kind}:"))
    if currency:
        masks.append(pc.ends_with(accounts, f":{currency}"))
    if holders is not None:
        anywhere = [pc.match_substring(accounts, f":{h}:") for h in sorted(holders)]
        masks.append(functools.reduce(pc.or_, anywhere) if anywhere else pa.array(np.zeros(len(accounts), dtype=bool)))
    if not masks:
        return pa.array(np.arange(len(accounts), dtype=np.int64))
    return pc.indices_nonzero(functools.reduce(pc.and_, masks))


def matching(
    accounts: pa.Array, kind: str | None, currency: str | None, holders: Collection[str] | None
) -> tuple[npt.NDArray[np.int64], list[str]]:
    """The positions and keys of ``accounts`` of ``kind``, ``currency`` and ``holders`` (any, when None),
    narrowed in Arrow and confirmed key by key."""
    import numpy as np

    picked = _key_filter(accounts, kind, currency, holders)
    at = picked.to_numpy(zero_copy_only=False).astype(np.int64)
    keys = accounts.take(picked).to_pylist()
    if not (kind or holders is not None) or not keys:
        return at, keys
    wanted = set(holders) if holders is not None else None
    keep = []
    for i, key in enumerate(keys):
        k, h, _ = parse_account_key(key)
        if not ((kind and k != kind) or (wanted is not None and h not in wanted)):
            keep.append(i)
    return at[keep], [keys[i] for i in keep]


def pending_deltas(
    conn: Connection, *, kind: str | None = None, currency: str | None = None, holders: Collection[str] | None = None
) -> dict[str, int]:
    """Per account key, what the pending segments add to its balance, filtered like
    ``ledger.records.account_balances``. Arrow is imported only when a segment is pending, so a light
    command on a store with none loads no Arrow."""
    out: dict[str, int] = {}
    wanted = set(holders) if holders is not None else None
    for seg in iter_segments(conn, after=fold_watermark(conn), currency=currency):
        import pyarrow as pa

        at, keys = matching(seg.accounts, kind, currency, wanted)
        if not keys:
            continue
        for key, amount in zip(keys, seg.amounts.take(pa.array(at)).to_pylist()):
            out[key] = out.get(key, 0) + int(amount)
    return out


def pending_carries(
    conn: Connection, currency: str, payees: pa.Array
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """For each of ``payees`` (a string array): whether a pending segment of ``currency`` carries it, and
    the carry the latest such segment left."""
    import numpy as np
    import pyarrow.compute as pc

    found = np.zeros(len(payees), dtype=np.bool_)
    values = np.zeros(len(payees), dtype=np.int64)
    for _, seg_payees, seg_subunits in iter_carries(conn, after=fold_watermark(conn), currency=currency):
        where = pc.index_in(payees, value_set=seg_payees)
        hit = where.is_valid().to_numpy(zero_copy_only=False)
        if not hit.any():
            continue
        positions = where.fill_null(0).to_numpy()[hit]
        values[hit] = seg_subunits.to_numpy()[positions]
        found |= hit
    return found, values


def latest_carries(
    payees: pa.Array, sources: Sequence[tuple[pa.Array, npt.NDArray[np.int64]]], carry: npt.NDArray[np.int64]
) -> None:
    """Set ``carry[i]`` for each of ``payees`` (distinct strings) that ``sources`` carry, the latest source
    winning: ``sources`` are (payees, subunits) pairs, oldest first (the snapshot's, then each pending
    segment's). One hash of ``payees``, probed by every source's payees in one call."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if not sources or not len(payees):
        return
    probes = pa.chunked_array([p.cast(pa.string()) for p, _ in sources], pa.string())
    at = pc.index_in(probes, value_set=payees).combine_chunks().fill_null(-1).to_numpy().astype(np.int64)
    start = 0
    for source_payees, subunits in sources:  # each source carries a payee once: no position twice in one
        part = at[start : start + len(source_payees)]
        start += len(source_payees)
        hit = part >= 0
        carry[part[hit]] = subunits[hit]
