"""Each payee's carried fraction, kept per store and currency by the process between accruals.

``records.read_carries`` probes the snapshot's carries and every pending segment's with a batch's payees.
When most batches pay new people, the snapshot holds everyone carried so far (2 x 10^6 payees in the
many-payee benchmark), and every batch hashed all of them again: about 0.8 s a batch there. A carry
changes only through an accrual's segment, and a segment is never changed or removed once committed (a
fold copies carries into the snapshot and leaves the segments); so a process keeps, per store and
currency, the carries as of the last segment it read, and reads only the segments above it. Accruals read
carries under ``ACCRUAL_LOCK``, held until they commit, so segments commit in the order of their ids.

A payee ``name:<id>`` (the usual one) is kept in an array indexed by the id, 4 bytes a name id up to
``CARRY_CACHE_NAME_ID_MAX``: a batch's carries are then one NumPy gather, with no hash of any string.
Other payees are kept in a dict. Only committed segments enter the cache: one written by the reading
transaction itself (a batch of several periods) is read into that call's lookup alone
(``segments.written_in``), so a rollback leaves nothing behind. The cache is read again when its last
segment is gone or not the same (an older copy of the database put back), and not kept for a store with
legacy ``carries`` rows or beyond ``CARRY_CACHE_PAYEES_MAX`` other payees.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from endcredits.ledger.segments import segment_carries, segment_sha_of, written_in
from endcredits.ledger.snapshot import read_snapshot
from endcredits.limits import CARRY_CACHE_NAME_ID_MAX, CARRY_CACHE_PAYEES_MAX
from endcredits.store.bulk import fetch_all

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pyarrow as pa

_POWERS_OF_TEN = [10**k for k in range(19)]
_NAME = r"^name:(0|[1-9][0-9]{0,17})$"
"""A payee kept by its name id: ``name:`` and the id as ``str(int)`` writes it (``name:07`` is another payee)."""


@dataclass
class _Carries:
    """One store's carries in one currency as of segment ``through`` (0: none read), whose SHA-256 is
    ``through_sha``: by name id (``by_id[id]``, 0 where none) and, for other payees, by text."""

    by_id: npt.NDArray[np.uint32]
    others: dict[str, int] = field(default_factory=dict)
    through: int = 0
    through_sha: str = ""
    last: tuple[pa.Array, npt.NDArray[np.int64], npt.NDArray[np.bool_]] | None = None
    """The payees last looked up and their ids: the next segment carries the same ones, parsed once."""

    def set(self, payees: pa.Array, subunits: npt.NDArray[np.int64]) -> None:
        """Record ``payees``' carries (distinct payees; later calls win)."""
        import numpy as np

        if self.last is not None and payees.equals(self.last[0]):  # a comparison of bytes
            ids, named = self.last[1], self.last[2]
        else:
            ids, named = _name_ids(payees)
        kept = named & (ids <= CARRY_CACHE_NAME_ID_MAX)
        if kept.any():
            top = int(ids[kept].max())
            if top >= len(self.by_id):
                size = min(max(top + 1, 2 * len(self.by_id)), CARRY_CACHE_NAME_ID_MAX + 1)
                grown = np.zeros(size, dtype=np.uint32)
                grown[: len(self.by_id)] = self.by_id
                self.by_id = grown
            self.by_id[ids[kept]] = subunits[kept]
        if not kept.all():
            rest = np.flatnonzero(~kept)
            self.others.update(zip(payees.take(rest).to_pylist(), subunits[rest].tolist()))

    def get(self, payees: pa.Array, numbers: npt.NDArray[np.int64] | None = None) -> npt.NDArray[np.int64]:
        """Each of ``payees``' carry, 0 for none. ``numbers``: their name ids where all are names."""
        import numpy as np

        ids, named = _name_ids(payees) if numbers is None else (numbers, _canonical(payees, numbers))
        self.last = (payees, ids, named)
        kept = named & (ids < len(self.by_id))
        out = np.zeros(len(payees), dtype=np.int64)
        out[kept] = self.by_id[ids[kept]]
        if self.others and not kept.all():
            rest = np.flatnonzero(~kept)
            get = self.others.get
            out[rest] = [get(p, 0) for p in payees.take(rest).to_pylist()]
        return out


_lock = threading.Lock()
_cached: dict[tuple[str, str, str], _Carries] = {}


def cached_carries(
    conn: Connection, currency: str, payees: pa.Array, numbers: npt.NDArray[np.int64] | None = None
) -> npt.NDArray[np.int64] | None:
    """Each of ``payees``' (a string array) carry in ``currency`` as of now, 0 for none; or None where the
    cache does not apply (legacy carry rows), and the caller reads them itself. ``numbers``: the payees'
    name ids, where all are names (``routes.name_numbers``)."""
    if fetch_all(conn, "SELECT 1 FROM carries LIMIT 1"):
        return None
    token = fetch_all(conn, "SELECT store_token FROM route_versions WHERE id = 1")
    key = (str(token[0][0]) if token else "", str(conn.engine.url), currency)
    with _lock:
        entry = _cached.pop(key, None)  # out while in use: an error cannot leave it half-updated for others
    if entry is None or (entry.through and segment_sha_of(conn, entry.through) != entry.through_sha):
        entry = _built(conn, currency)
    own = written_in(conn)
    mine: list[tuple[pa.Array, npt.NDArray[np.int64]]] = []
    for transfer_id, _, seg_payees, subunits in segment_carries(conn, after=entry.through, currency=currency):
        if transfer_id in own:  # not committed yet: this lookup only
            mine.append((seg_payees, subunits.to_numpy()))
        elif mine:  # a committed segment above one of ours: the lock makes it impossible; read afresh
            return _read_whole(conn, currency, payees)
        else:
            entry.set(seg_payees, subunits.to_numpy())
            entry.through, entry.through_sha = transfer_id, ""
    if entry.through and not entry.through_sha:
        entry.through_sha = segment_sha_of(conn, entry.through) or ""
    out = entry.get(payees, numbers)
    if len(entry.others) <= CARRY_CACHE_PAYEES_MAX:
        with _lock:
            _cached[key] = entry
    if mine:
        overlay = _Carries(_empty())
        for seg_payees, subunits in mine:
            overlay.set(seg_payees, subunits)
        import pyarrow.compute as pc

        carried = pc.is_in(payees, value_set=_concat([p for p, _ in mine])).to_numpy(zero_copy_only=False)
        out[carried] = overlay.get(payees)[carried]
    return out


def _built(conn: Connection, currency: str) -> _Carries:
    """The snapshot's carries in ``currency``, as of its fold's last segment; the caller reads the segments
    above it."""
    snap = read_snapshot(conn, balances=False)
    entry = _Carries(_empty())
    payees, subunits = snap.carries_of(currency)
    entry.set(payees, subunits)
    entry.through = snap.through_transfer_id
    entry.through_sha = (segment_sha_of(conn, entry.through) or "") if entry.through else ""
    return entry


def _read_whole(conn: Connection, currency: str, payees: pa.Array) -> npt.NDArray[np.int64]:
    """The carries from the snapshot and every segment above it, this transaction's included."""
    entry = _built(conn, currency)
    for _, _, seg_payees, subunits in segment_carries(conn, after=entry.through, currency=currency):
        entry.set(seg_payees, subunits.to_numpy())
    return entry.get(payees)


def _name_ids(payees: pa.Array) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Each payee's name id (0 where not a name) and whether it is one, parsed in C by Arrow."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    named = pc.match_substring_regex(payees, _NAME).fill_null(False).to_numpy(zero_copy_only=False)
    if not len(payees):
        return np.zeros(0, dtype=np.int64), named
    digits = pc.if_else(pa.array(named), pc.utf8_slice_codeunits(payees, 5), "0")
    return pc.cast(digits, pa.int64()).to_numpy(), named


def _canonical(payees: pa.Array, numbers: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Of payees that are all ``name:<digits>``, those whose digits are their id as ``str(int)`` writes it
    (no leading zero): then the text is ``name:`` and as many digits as the id has."""
    import numpy as np
    import pyarrow.compute as pc

    digits = np.maximum(np.searchsorted(_POWERS_OF_TEN, numbers, side="right"), 1)
    canonical: npt.NDArray[np.bool_] = pc.binary_length(payees).to_numpy() == 5 + digits
    return canonical


def _empty() -> npt.NDArray[np.uint32]:
    import numpy as np

    return np.zeros(0, dtype=np.uint32)


def _concat(arrays: list[pa.Array]) -> pa.Array:
    import pyarrow as pa

    return pa.concat_arrays([a.cast(pa.string()) for a in arrays])


def forget_carries() -> None:
    """Drop every cached carry (tests; a process that wants its memory back)."""
    with _lock:
        _cached.clear()
