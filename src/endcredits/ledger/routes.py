"""Payees' routes for accruals, with the registered and claimed names cached per store between batches.

A batch that pays new people routes 10^5-10^6 names, nearly all unclaimed (escrow under the name itself).
``registry.records.route_arrays`` asks the database for every one (a probe per name); here a process keeps,
per store, which name ids are registered (a bitmap, read forward by id) and which are claimed, by whom and
whether that person is verified. Only a claim or a verification changes a route: each moves
``route_versions.claims`` (triggers, migration 0016), and the claims are read again when it has moved;
the bitmap is read again whole when ``names_removed`` has (no code removes a name) or the largest name id
fell below the largest read (an older copy of the database put back). A name the bitmap
does not hold yet (registered since, or committed late on PostgreSQL) is looked up as before, and an
unregistered one is refused as before. The bitmap takes a byte per name id: 1 GB at 10^9 names.

Read inside the accrual's transaction before it writes names or claims (it never does): everything read
is committed. The order is: new ids, then the version, then the claims; a claimed name seen as registered
was claimed no later than its claim was read, and a claim that moves after the version was read moves it
again, so the next batch reads the claims again. Routes are those of ``route_arrays``, exactly (tested).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sqlalchemy import Connection

from endcredits.registry.records import _claimed_names, _name_numbers, route_arrays
from endcredits.store.bulk import fetch_all

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pyarrow as pa


@dataclass(frozen=True)
class _Known:
    """What one store's names looked like: registered ids (a bitmap), the largest id read, and the claims
    as of ``claims_version``: sorted claimed ids, their persons and whether each is verified."""

    names_removed: int
    registered: npt.NDArray[np.bool_]
    max_id: int
    claims_version: int
    claimed: npt.NDArray[np.int64]
    persons: npt.NDArray[np.int64]
    verified: npt.NDArray[np.bool_]


_lock = threading.Lock()
_known: dict[tuple[str, str], _Known] = {}


def name_numbers(payees: pa.Array) -> npt.NDArray[np.int64] | None:
    """The ids of payees that are all ``name:<digits>``, parsed in C; None when any is of another form."""
    return _name_numbers(payees)


def route_payees(
    conn: Connection, payees: pa.Array, numbers: npt.NDArray[np.int64] | None | Literal["parse"] = "parse"
) -> tuple[pa.Array, pa.Array, bool]:
    """``route_arrays(conn, payees)``: each payee's account kind and holder, as two string arrays; and whether
    the payees are known to be distinct (True only where that costs nothing per payee: names the cache
    holds, marked in a bitmap of the registered ids), so that the caller may skip hashing them.
    ``numbers``: ``name_numbers(payees)`` where the caller has them."""
    import numpy as np

    if isinstance(numbers, str):
        numbers = _name_numbers(payees)
    if numbers is None:
        return (*route_arrays(conn, payees), False)
    known = _refreshed(conn)
    kinds, holders = _routes(conn, payees, numbers, known)
    distinct = False
    if len(numbers) and int(numbers.max()) < len(known.registered):
        marks = np.zeros(len(known.registered), dtype=np.bool_)
        marks[numbers] = True
        distinct = int(np.count_nonzero(marks)) == len(numbers)
    return kinds, holders, distinct


def _refreshed(conn: Connection) -> _Known:
    """This store's cached names, brought up to date: ids registered since, then the claims if they moved."""
    import numpy as np

    token, removed, top = fetch_all(
        conn, "SELECT store_token, names_removed, (SELECT MAX(id) FROM names) FROM route_versions WHERE id = 1"
    )[0]
    key = (str(token), str(conn.engine.url))
    with _lock:
        known = _known.get(key)
    if known is not None and (known.names_removed != int(removed) or int(top or 0) < known.max_id):
        known = None  # a name row was removed (or the database replaced by an older copy): read the ids again
    registered, max_id = (known.registered, known.max_id) if known else (np.zeros(0, dtype=np.bool_), 0)
    new_ids = _ids_above(conn, max_id)
    # After the ids: a name registered with its claim moved the version before it could be seen.
    version = int(fetch_all(conn, "SELECT claims FROM route_versions WHERE id = 1")[0][0])
    if len(new_ids):
        max_id = int(new_ids.max())
        grown = np.zeros(max_id + 1, dtype=np.bool_)
        grown[: len(registered)] = registered
        grown[new_ids] = True
        registered = grown
    if known is not None and known.claims_version == version:
        claimed, persons, verified = known.claimed, known.persons, known.verified
    else:
        claimed, persons, verified = _claims(conn)
    known = _Known(int(removed), registered, max_id, version, claimed, persons, verified)
    with _lock:
        _known[key] = known
    return known


def _ids_above(conn: Connection, after: int) -> npt.NDArray[np.int64]:
    """The ids of the names above ``after``, as one text the database joins (no Python object per name)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    concat = "string_agg(CAST(id AS TEXT), ',')" if conn.dialect.name == "postgresql" else "group_concat(id, ',')"
    joined = fetch_all(conn, f"SELECT {concat} FROM names WHERE id > {int(after)}")[0][0]
    if not joined:
        return np.zeros(0, dtype=np.int64)
    parts = pc.split_pattern(pa.array([joined], pa.string()), ",").flatten()
    ids: npt.NDArray[np.int64] = pc.cast(parts, pa.int64()).to_numpy()
    return ids


def _claims(conn: Connection) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Every claimed name (sorted), its person and whether that person is verified (``ix_names_claimed``)."""
    import numpy as np

    rows = fetch_all(
        conn,
        "SELECT n.id, n.person_id, CASE WHEN p.verified_at IS NULL THEN 0 ELSE 1 END FROM names n "
        "JOIN people p ON p.id = n.person_id WHERE n.person_id IS NOT NULL ORDER BY n.id",
    )
    table = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return table[:, 0].copy(), table[:, 1].copy(), table[:, 2].astype(np.bool_)


def _routes(
    conn: Connection, payees: pa.Array, numbers: npt.NDArray[np.int64], known: _Known
) -> tuple[pa.Array, pa.Array]:
    """The routes of names whose ``numbers`` are given: escrow under the name, unless claimed."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    inside = numbers < len(known.registered)
    seen = np.zeros(len(numbers), dtype=np.bool_)
    seen[inside] = known.registered[numbers[inside]]
    unseen = numbers[~seen]
    claims: dict[int, tuple[int, bool]] = {}
    if len(unseen):  # looked up as route_arrays does: an unregistered name is refused there
        claims = _claimed_names(conn, np.unique(unseen).tolist())
    at = np.searchsorted(known.claimed, numbers)
    hit = np.zeros(len(numbers), dtype=np.bool_)
    ok = at < len(known.claimed)
    hit[ok] = known.claimed[at[ok]] == numbers[ok]
    hit &= seen
    positions = np.flatnonzero(hit).tolist()
    persons = known.persons[at[hit]].tolist()
    verified = known.verified[at[hit]].tolist()
    for i in np.flatnonzero(~seen).tolist():
        if int(numbers[i]) in claims:
            person, ok_ = claims[int(numbers[i])]
            positions.append(i)
            persons.append(person)
            verified.append(ok_)
    kinds = pa.array(["escrow"], pa.string()).take(pa.array(np.zeros(len(payees), dtype=np.int32)))
    if not positions:
        return kinds, payees
    order = np.argsort(positions, kind="stable")
    mask = np.zeros(len(payees), dtype=np.bool_)
    mask[positions] = True
    kind_of = ["payable" if verified[k] else "escrow" for k in order.tolist()]
    holder_of = [f"person:{persons[k]}" for k in order.tolist()]
    kinds = pc.replace_with_mask(kinds, pa.array(mask), pa.array(kind_of, pa.string()))
    return kinds, pc.replace_with_mask(payees, pa.array(mask), pa.array(holder_of, pa.string()))
