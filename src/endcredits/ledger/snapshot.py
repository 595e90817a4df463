"""The payees' balances and carries as a fold left them, kept columnar: the ledger snapshot.

A fold used to open an account row (three B-trees) and write a carry row for every payee it met, 13-18
microseconds each, rows that nobody reads until a claim, a payout or a statement needs them. A fold now
writes one ``ledger_snapshots`` row instead: every payees' account (``payable``, ``escrow``) that has no
account row, with its balance and the last transfer that changed it, and every payee's carry, as two
Arrow blobs. It is read through by every reader like one big pending segment.

A balance is counted exactly once: an account is either a row (``accounts``) or a snapshot entry, never
both, and the pending segments add to either. A writer that needs a row (``post_transfer``: claims,
payouts, releases, expiry) opens it with the snapshot's balance; the rows opened after the snapshot was
written have ids above its ``account_id_max``, and ``read_snapshot`` drops their keys from what it
returns, so the row wins. The next fold leaves them out. A carry is the latest pending segment's, else
the snapshot's, else the ``carries`` row's (written by folds before the snapshot existed; never since).

This module encodes, decodes and reads the snapshot; ``ledger.records.fold_pending`` writes it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, select

from endcredits.ledger.segments import binary_row, ipc_bytes, read_ipc, segment_sha256
from endcredits.store.bulk import fetch_all
from endcredits.store.schema import ledger_snapshots

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pyarrow as pa

SNAPSHOT_KINDS = ("payable", "escrow")
"""The account kinds a fold keeps in the snapshot: the payees' own. Operator accounts (pool, suspense) and
those only other transfers touch (fund, clearing, bank) are always rows."""


@functools.cache
def snapshot_schemas() -> dict[str, pa.Schema]:
    """The blobs' Arrow schemas: balances in int64, or as decimal text when any is beyond int64."""
    import pyarrow as pa

    return {
        "BALANCES": pa.schema([("account", pa.string()), ("balance", pa.int64()), ("last_transfer_id", pa.int64())]),
        "BALANCES_BIG": pa.schema(
            [("account", pa.string()), ("balance", pa.string()), ("last_transfer_id", pa.int64())]
        ),
        "CARRIES": pa.schema([("currency", pa.string()), ("payee", pa.string()), ("subunits", pa.int64())]),
    }


@dataclass(frozen=True)
class Snapshot:
    """The accounts without a row (``keys`` distinct) and the carries, as of fold ``through_transfer_id``."""

    through_transfer_id: int
    account_id_max: int
    keys: pa.Array  # string
    balances: npt.NDArray[Any]  # int64, or Python ints (object) when any is beyond int64
    last: npt.NDArray[np.int64]  # the last transfer that changed each
    carry_currencies: pa.Array  # string
    carry_payees: pa.Array  # string
    carry_subunits: npt.NDArray[np.int64]
    sha256: str
    balances_as_text: bool = False  # stored as decimal text (``BALANCES_BIG``); a fold keeps that form

    def carries_of(self, currency: str) -> tuple[pa.Array, npt.NDArray[np.int64]]:
        """(payees, subunits) carried in ``currency``."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if len(self.carry_payees) == 0:
            return self.carry_payees, self.carry_subunits
        mask = pc.equal(self.carry_currencies, pa.scalar(currency, pa.string()))
        at = pc.indices_nonzero(mask).to_numpy()
        return self.carry_payees.take(pa.array(at)), self.carry_subunits[at]


def empty_snapshot() -> Snapshot:
    import numpy as np
    import pyarrow as pa

    none = pa.array([], pa.string())
    return Snapshot(0, 0, none, np.zeros(0, np.int64), np.zeros(0, np.int64), none, none, np.zeros(0, np.int64), "")


def encode_snapshot(snap: Snapshot) -> tuple[bytes, bytes, str]:
    """(balances blob, carries blob, SHA-256 of both as ``segment_sha256`` takes them). The blobs' buffers
    are LZ4-compressed: the keys' repeated prefixes shrink, for about 0.1-0.2 s of a fold's CPU at 10^6
    accounts and a few hundredths of a second of a reader's."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    schemas = snapshot_schemas()
    last = pa.array(snap.last, pa.int64())
    if snap.balances.dtype == np.int64 and not snap.balances_as_text:
        table = pa.table([snap.keys, pa.array(snap.balances, pa.int64()), last], schema=schemas["BALANCES"])
    else:
        if snap.balances.dtype == np.int64:  # Arrow writes int64 as str() does, at C speed
            text = pc.cast(pa.array(snap.balances, pa.int64()), pa.string())
        else:
            text = pa.array([str(int(v)) for v in snap.balances.tolist()], pa.string())
        table = pa.table([snap.keys, text, last], schema=schemas["BALANCES_BIG"])
    balances_blob = ipc_bytes(table, "lz4")
    carries_blob = ipc_bytes(
        pa.table(
            [snap.carry_currencies, snap.carry_payees, pa.array(snap.carry_subunits, pa.int64())],
            schema=schemas["CARRIES"],
        ),
        "lz4",
    )
    return balances_blob, carries_blob, segment_sha256(balances_blob, carries_blob)


def write_snapshot(conn: Connection, snap: Snapshot) -> str:
    """Replace the snapshot with ``snap`` inside the caller's transaction; returns its SHA-256."""
    balances_blob, carries_blob, sha = encode_snapshot(snap)
    conn.execute(delete(ledger_snapshots))
    conn.execute(
        ledger_snapshots.insert().values(
            through_transfer_id=snap.through_transfer_id,
            account_id_max=snap.account_id_max,
            account_count=len(snap.keys),
            carry_count=len(snap.carry_payees),
            balances_arrow=balances_blob,
            carries_arrow=carries_blob,
            sha256=sha,
        )
    )
    return sha


def _snapshot_row(conn: Connection, names: list[str]) -> tuple[Any, ...] | None:
    """The latest snapshot row's columns ``names``."""
    sql = f"SELECT {', '.join(names)} FROM ledger_snapshots ORDER BY through_transfer_id DESC LIMIT 1"
    return binary_row(conn, sql)


def has_snapshot(conn: Connection) -> bool:
    """Whether a fold wrote a snapshot (read without NumPy or Arrow, so a light command that finds none
    loads neither)."""
    return conn.execute(select(ledger_snapshots.c.through_transfer_id).limit(1)).first() is not None


def snapshot_count(conn: Connection) -> int:
    """How many snapshot rows there are (verify: at most one)."""
    return len(conn.execute(select(ledger_snapshots.c.through_transfer_id)).all())


def read_snapshot(conn: Connection, *, balances: bool = True, carries: bool = True, live: bool = True) -> Snapshot:
    """The latest snapshot (empty when no fold wrote one), decoded: its balances and carries when asked.
    ``live``: without the accounts opened as rows since it was written, whose rows hold their balances."""
    import pyarrow as pa
    import pyarrow.compute as pc

    empty = empty_snapshot()
    names = ["through_transfer_id", "account_id_max", "sha256"]
    names += ["balances_arrow"] if balances else []
    names += ["carries_arrow"] if carries else []
    row = _snapshot_row(conn, names)
    if row is None:
        return empty
    through, id_max, sha, *blobs = row
    keys, values, last, as_text = empty.keys, empty.balances, empty.last, False
    if balances:
        schemas = (snapshot_schemas()["BALANCES"], snapshot_schemas()["BALANCES_BIG"])
        table = read_ipc(bytes(blobs.pop(0)), int(through), "snapshot balances", schemas)
        keys = table.column(0).combine_chunks()
        column = table.column(1).combine_chunks()
        as_text = not pa.types.is_integer(column.type)
        values = _text_balances(column) if as_text else column.to_numpy(zero_copy_only=False)
        last = table.column(2).combine_chunks().to_numpy(zero_copy_only=False)
        if live:
            opened = [r[0] for r in fetch_all(conn, f"SELECT key FROM accounts WHERE id > {int(id_max)}")]
            if opened:
                at = pc.indices_nonzero(pc.invert(pc.is_in(keys, value_set=pa.array(opened, pa.string())))).to_numpy()
                keys, values, last = keys.take(pa.array(at)), values[at], last[at]
    currencies, payees, subunits = empty.carry_currencies, empty.carry_payees, empty.carry_subunits
    if carries:
        table = read_ipc(bytes(blobs.pop(0)), int(through), "snapshot carries", (snapshot_schemas()["CARRIES"],))
        currencies, payees = table.column(0).combine_chunks(), table.column(1).combine_chunks()
        subunits = table.column(2).combine_chunks().to_numpy(zero_copy_only=False)
    return Snapshot(int(through), int(id_max), keys, values, last, currencies, payees, subunits, str(sha), as_text)


def _text_balances(column: pa.Array) -> npt.NDArray[Any]:
    """Balances stored as decimal text: int64 when every one fits (parsed by Arrow), else Python ints."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.null_count == 0:
        try:
            return pc.cast(column, pa.int64()).to_numpy()  # type: ignore[no-any-return]
        except pa.ArrowInvalid:  # beyond int64
            pass
    return np.array([int(v) for v in column.to_pylist()], dtype=object)


def snapshot_raw_sha256(conn: Connection) -> tuple[str, str] | None:
    """(recorded SHA-256, SHA-256 of the stored blobs) of the snapshot, for ``verify``; None without one."""
    row = _snapshot_row(conn, ["sha256", "balances_arrow", "carries_arrow"])
    if row is None:
        return None
    return str(row[0]), segment_sha256(bytes(row[1]), bytes(row[2]))
