"""Registry rows: people, credited names, works, credits, lineage. Each write is audited.

Functions take the caller's connection; the caller opens the transaction (``Store.write``), so a batch
of registry changes commits or fails as a whole.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import Connection, func, or_, select, update

from endcredits.errors import ConflictError, NotFoundError, ValidationError, invariant
from endcredits.limits import (
    CREDITS_PER_WORK_MAX,
    LINEAGE_DEPTH_MAX,
    LIST_ROWS_MAX,
    NAME_LENGTH_MAX,
    TITLE_LENGTH_MAX,
    WEIGHT_MAX,
    check_id,
    check_ids,
)
from endcredits.store.audit import append_audit
from endcredits.store.bulk import bulk_insert, chunks, select_in, select_joined, without_gc
from endcredits.store.engine import utc_now
from endcredits.store.schema import (
    credits,
    fingerprint_bands,
    lineage,
    names,
    people,
    work_fingerprints,
    work_links,
    works,
)

if TYPE_CHECKING:  # the bulk paths import numpy and pyarrow themselves: a command that only reads starts fast
    import numpy as np
    import numpy.typing as npt
    import pyarrow as pa

_ROLE_PART = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_PAYEE = re.compile(r"(person|name):([1-9][0-9]*)")


def clean_text(value: str, what: str, length_max: int = NAME_LENGTH_MAX) -> str:
    """Trimmed, NFC-normalized text without control characters, or ``ValidationError``."""
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be text")
    if (
        value.isascii()
        and value.isprintable()
        and 0 < len(value) <= length_max
        and value == value.strip()
        and "  " not in value
    ):
        return value  # already clean: printable ASCII is NFC and has no control characters
    text = unicodedata.normalize("NFC", " ".join(value.split()))
    if not text:
        raise ValidationError(f"{what} is empty")
    if len(text) > length_max:
        raise ValidationError(f"{what} is {len(text)} characters; at most {length_max}")
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        raise ValidationError(f"{what} {text!r} contains control characters")
    return text


def parse_role(role: str) -> tuple[str, str]:
    scheme, _, code = role.partition(":")
    if not _ROLE_PART.fullmatch(scheme) or not _ROLE_PART.fullmatch(code):
        raise ValidationError(f"role {role!r} must be scheme:code in lower case, such as endcredits:composer")
    return scheme, code


def parse_payee(payee: str) -> tuple[str, int]:
    m = _PAYEE.fullmatch(payee)
    if m is None:
        raise ValidationError(f"payee {payee!r} must be person:ID or name:ID")
    return m.group(1), int(m.group(2))


def content_sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


# People and names --------------------------------------------------------------------------------
def add_person(
    conn: Connection, handle: str, *, iban: str | None = None, bic: str | None = None, email: str | None = None
) -> int:
    """Register a person by a handle (a pseudonym is fine: no legal name is needed to be paid). Payment and
    contact details go to ``registry.private``, sealed with the operator's key, never into ``people``."""
    from endcredits.registry.private import check_email, set_private

    handle = clean_text(handle, "handle")
    if conn.execute(select(people.c.id).where(people.c.handle == handle)).first() is not None:
        raise ConflictError(f"a person with handle {handle!r} already exists")
    at = utc_now()
    person_id = int(
        conn.execute(people.insert().values(handle=handle, created_at=at).returning(people.c.id)).scalar_one()
    )
    set_private(conn, person_id, iban=iban, bic=bic, email=check_email(email) if email else None)
    append_audit(
        conn, "person.added", f"person:{person_id}", {"handle": handle, "payout_account": iban is not None}, at=at
    )
    return person_id


def add_people(conn: Connection, handles: Sequence[str]) -> list[int]:
    """Register many people at once (one audit entry); ids in the order of ``handles``. A handle already
    registered, or given twice, is a ``ConflictError`` and nothing is written."""
    cleaned = [clean_text(h, "handle") for h in handles]
    if len(set(cleaned)) != len(cleaned):
        raise ConflictError("a handle is given twice")
    taken = select_in(conn, "SELECT handle FROM people WHERE handle {in}", cleaned)
    if taken:
        raise ConflictError(f"a person with handle {taken[0][0]!r} already exists")
    at = utc_now()
    bulk_insert(conn, "people", ("handle", "created_at"), [(h, at) for h in cleaned])
    ids = dict(select_in(conn, "SELECT handle, id FROM people WHERE handle {in}", cleaned))
    if cleaned:
        append_audit(conn, "people.added", "people", {"count": len(cleaned), "first": int(ids[cleaned[0]])}, at=at)
    return [int(ids[h]) for h in cleaned]


def get_person(conn: Connection, person_id: int) -> Any:
    row = conn.execute(select(people).where(people.c.id == person_id)).first()
    if row is None:
        raise NotFoundError(f"no person {person_id}: list people with `endcredits people list`")
    return row


def check_list_limit(limit: int) -> int:
    """``limit`` if it is a row count a listing may return (1..LIST_ROWS_MAX), else ``ValidationError``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIST_ROWS_MAX:
        raise ValidationError(f"a listing returns 1..LIST_ROWS_MAX={LIST_ROWS_MAX} rows, not {limit!r}")
    return limit


@dataclass(frozen=True)
class PersonSummary:
    person_id: int
    handle: str
    verified: bool


def people_list(conn: Connection, *, limit: int) -> tuple[int, list[PersonSummary]]:
    """How many people are registered, and the first ``limit`` of them by id."""
    check_list_limit(limit)
    total = conn.execute(select(func.count()).select_from(people)).scalar_one()
    rows = conn.execute(select(people.c.id, people.c.handle, people.c.verified_at).order_by(people.c.id).limit(limit))
    return int(total), [PersonSummary(int(r.id), r.handle, r.verified_at is not None) for r in rows]


@dataclass(frozen=True)
class WorkSummary:
    work_id: str
    title: str
    kind: str
    source: str | None


def works_list(conn: Connection, *, limit: int) -> tuple[int, list[WorkSummary]]:
    """How many works are registered, and the ``limit`` most recently registered, newest first."""
    check_list_limit(limit)
    total = conn.execute(select(func.count()).select_from(works)).scalar_one()
    rows = conn.execute(
        select(works.c.id, works.c.title, works.c.kind, works.c.source).order_by(works.c.seq.desc()).limit(limit)
    )
    return int(total), [WorkSummary(r.id, r.title, r.kind, r.source) for r in rows]


def holder_labels(conn: Connection, holders: Iterable[str]) -> dict[str, tuple[str, bool | None]]:
    """For each ``person:N`` its handle and whether the person is verified; for each ``name:N`` the credited
    name and None. Holders that are neither, or not registered, are absent."""
    persons = sorted({int(h.split(":", 1)[1]) for h in holders if h.startswith("person:")})
    name_ids_ = sorted({int(h.split(":", 1)[1]) for h in holders if h.startswith("name:")})
    out: dict[str, tuple[str, bool | None]] = {}
    for pid, handle, verified_at in people_verification(conn, persons):
        out[f"person:{pid}"] = (handle, verified_at is not None)
    for part in chunks(name_ids_):
        for r in conn.execute(select(names.c.id, names.c.name).where(names.c.id.in_(part))):
            out[f"name:{r.id}"] = (r.name, None)
    return out


def names_of_person(conn: Connection, person_id: int) -> list[tuple[int, str]]:
    """``(id, name)`` of the credited names claimed by the person, by id."""
    q = select(names.c.id, names.c.name).where(names.c.person_id == person_id).order_by(names.c.id)
    return [(int(r.id), str(r.name)) for r in conn.execute(q)]


def work_titles(conn: Connection, work_ids: Sequence[str]) -> dict[str, str]:
    """The title of each registered work among ``work_ids``."""
    return {w: r.title for w, r in work_rows(conn, work_ids).items()}


def people_verification(conn: Connection, person_ids: Sequence[int]) -> list[tuple[int, str, str | None]]:
    """``(id, handle, verified_at)`` of the registered people among ``person_ids``, by id."""
    return sorted(
        (int(i), h, v)
        for i, h, v in select_in(
            conn, "SELECT id, handle, verified_at FROM people WHERE id {in}", sorted(set(person_ids))
        )
    )


def verify_person(conn: Connection, person_id: int, *, verified_by: str) -> None:
    """Mark a person verified on the word of an issuer the operator trusts (``registry.identity`` does it
    from a verifiable credential)."""
    get_person(conn, person_id)
    issuer = clean_text(verified_by, "issuer")
    at = utc_now()
    conn.execute(update(people).where(people.c.id == person_id).values(verified_at=at, verified_by=issuer))
    append_audit(conn, "person.verified", f"person:{person_id}", {"verified_by": issuer}, at=at)


def set_payout_account(conn: Connection, person_id: int, *, iban: str, bic: str | None) -> None:
    """Set where a person is paid; sealed at rest (``registry.private``). The audit log keeps the last four
    characters only."""
    from endcredits.registry.private import set_private

    get_person(conn, person_id)
    set_private(conn, person_id, iban=iban, bic=bic)
    append_audit(conn, "person.payout_account", f"person:{person_id}", {"iban_last4": iban[-4:]})


def name_ids(conn: Connection, raw_names: Iterable[str]) -> dict[str, int]:
    """Ids of credited names, creating those not seen before."""
    wanted = sorted({clean_text(n, "credited name") for n in raw_names})
    found: dict[str, int] = {}
    for part in chunks(wanted):
        found.update(
            {r.name: r.id for r in conn.execute(select(names.c.name, names.c.id).where(names.c.name.in_(part)))}
        )
    missing = [n for n in wanted if n not in found]
    if missing:
        at = utc_now()
        for part in chunks(missing):
            conn.execute(names.insert(), [{"name": n, "created_at": at} for n in part])
            found.update(
                {r.name: r.id for r in conn.execute(select(names.c.name, names.c.id).where(names.c.name.in_(part)))}
            )
        append_audit(conn, "names.added", "names", {"count": len(missing)}, at=at)
    return found


def claim_name(conn: Connection, name_id: int, person_id: int) -> None:
    """Link a credited name to the person who claims it. The escrow move is ``ledger.claim_escrow``."""
    row = conn.execute(select(names).where(names.c.id == name_id)).first()
    if row is None:
        raise NotFoundError(f"no credited name {name_id}")
    get_person(conn, person_id)
    if row.person_id is not None and row.person_id != person_id:
        raise ConflictError(f"name {name_id} ({row.name}) is already claimed by person {row.person_id}")
    if row.person_id == person_id:
        return
    at = utc_now()
    conn.execute(update(names).where(names.c.id == name_id).values(person_id=person_id, claimed_at=at))
    append_audit(conn, "name.claimed", f"name:{name_id}", {"person": person_id}, at=at)


# Works, credits, lineage -------------------------------------------------------------------------
class WorkIn(NamedTuple):
    """A work to register (an immutable record: a bulk import builds 10^6 of them)."""

    content: bytes
    title: str
    kind: str
    source: str | None = None
    rights_holder: str | None = None  # "person:ID" or "name:ID"


class CreditIn(NamedTuple):
    """A credit to record (an immutable record: a bulk import builds 3 x 10^6 of them)."""

    work_id: str
    payee: str  # "person:ID" or "name:ID"
    role: str  # "scheme:code"
    weight: int = 1


def _payee_columns(payee: str) -> tuple[int | None, int | None]:
    """(person_id, name_id) of a payee, one of them None."""
    kind, pid = parse_payee(payee)
    return (pid, None) if kind == "person" else (None, pid)


def _check_payees_exist(conn: Connection, columns: Iterable[tuple[int | None, int | None]]) -> None:
    person_ids: set[int] = set()
    name_ids_: set[int] = set()
    for person_id, name_id in set(columns):
        if person_id is not None:
            person_ids.add(person_id)
        if name_id is not None:
            name_ids_.add(name_id)
    for table, ids, what in (("people", person_ids, "person"), ("names", name_ids_, "name")):
        found = {int(r[0]) for r in select_in(conn, f"SELECT id FROM {table} WHERE id {{in}}", sorted(ids))}
        missing = sorted(ids - found)
        if missing:
            raise NotFoundError(f"no {what} {missing[0]}: register it first")


_WORK_COLUMNS = (
    "id",
    "title",
    "kind",
    "source",
    "size_bytes",
    "rights_holder_person_id",
    "rights_holder_name_id",
    "created_at",
)
_CREDIT_COLUMNS = ("work_seq", "person_id", "name_id", "role_scheme", "role_code", "weight", "created_at")


@without_gc
def add_works(conn: Connection, items: Sequence[WorkIn]) -> list[str]:
    """Register works by the SHA-256 of their content. Re-registering the same content is a no-op; content
    given twice in one batch is registered once, with the first copy's title."""
    at = utc_now()
    sha256 = hashlib.sha256
    ids: list[str] = []
    for w in items:
        if not isinstance(w.content, bytes) or not w.content:
            raise ValidationError(f"work {w.title!r} has no content")
        ids.append(sha256(w.content).hexdigest())
    # The first copy of each content, in input order; a dict keeps the last, so build it backwards.
    first = dict(zip(reversed(ids), reversed(items)))
    kinds: dict[str, str] = {}
    holders: dict[str, tuple[int | None, int | None]] = {}
    rows: list[tuple[Any, ...]] = []
    for wid, w in first.items():
        kind = kinds.get(w.kind) if isinstance(w.kind, str) else None
        if kind is None:
            kind = kinds[w.kind] = clean_text(w.kind, "kind", 32)
        holder: tuple[int | None, int | None] = (None, None)
        if w.rights_holder:
            holder = holders.get(w.rights_holder) or holders.setdefault(
                w.rights_holder, _payee_columns(w.rights_holder)
            )
        rows.append(
            (
                wid,
                clean_text(w.title, "title", TITLE_LENGTH_MAX),
                kind,
                clean_text(w.source, "source", TITLE_LENGTH_MAX) if w.source else None,
                len(w.content),
                holder[0],
                holder[1],
                at,
            )
        )
    if len(first) != len(ids):  # a repeated copy's rights holder is checked too, though the first copy's is kept
        holders.update((w.rights_holder, _payee_columns(w.rights_holder)) for w in items if w.rights_holder)
    _check_payees_exist(conn, holders.values())
    existing = existing_work_ids(conn, list(first))
    new = [r for r in rows if r[0] not in existing] if existing else rows
    sources = [r[3] for r in new if r[3]]
    taken = select_in(conn, "SELECT source FROM works WHERE source {in}", sources)
    if taken:
        raise ConflictError(f"source {taken[0][0]} is already registered with other content")
    # In key order: the id index takes the whole batch in one pass instead of at random pages (2x faster at 10^6).
    new.sort(key=itemgetter(0))
    bulk_insert(conn, "works", _WORK_COLUMNS, new)
    if new:
        append_audit(
            conn,
            "works.added",
            "works",
            {"count": len(new), "ids_sha256": content_sha256("\n".join(r[0] for r in new).encode())},
            at=at,
        )
    return ids


def _check_weights(weights: Sequence[Any]) -> None:
    # Whole-column checks first; the item-by-item scan only runs to name a bad weight.
    if set(map(type, weights)) <= {int} and 0 < min(weights) and max(weights) <= WEIGHT_MAX:
        return
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, int) or not 0 < w <= WEIGHT_MAX:
            raise ValidationError(f"credit weight must be an integer in 1..{WEIGHT_MAX}, got {w!r}")


@without_gc
def add_credits(conn: Connection, items: Sequence[CreditIn], *, allow_unknown_scheme: bool = False) -> int:
    """Credit people or names on works. Each work must exist; weights are positive integers; each role
    must be one ``registry.roles`` knows (a scheme outside it only with ``allow_unknown_scheme=True``).
    A credit already recorded (same work, payee and role), or given twice, is written once."""
    import numpy as np

    from endcredits.registry.roles import check_role

    if not items:
        return 0
    work_col, payee_col, role_col, weight_col = (list(map(itemgetter(i), items)) for i in range(4))  # columns
    roles = {r: parse_role(r) for r in sorted(set(role_col))}
    for scheme, code in roles.values():
        check_role(scheme, code, allow_unknown_scheme=allow_unknown_scheme)
    _check_weights(weight_col)
    payees = {p: _payee_columns(p) for p in set(payee_col)}
    # One query answers both "is each work registered" and "which credits does it have already".
    work_ids = sorted(set(work_col))
    check_ids(work_ids, "credited work id")
    seq_of: dict[str, int] = {}
    existing: list[tuple[int, int | None, int | None, str, str]] = []
    for r in select_in(
        conn,
        "SELECT w.id, w.seq, c.person_id, c.name_id, c.role_scheme, c.role_code FROM works w "
        "LEFT JOIN credits c ON c.work_seq = w.seq WHERE w.id {in}",
        work_ids,
    ):
        seq_of[r[0]] = r[1]
        if r[4] is not None:
            existing.append(r[1:])
    if len(seq_of) != len(work_ids):
        missing = sorted(set(work_ids) - set(seq_of))
        raise NotFoundError(f"credit names work {missing[0]}, which is not registered: add the work first")
    _check_payees_exist(conn, payees.values())
    # Each credit as integer codes (work seq, payee, role): repeats, counts and order come from NumPy.
    payee_code = {p: i for i, p in enumerate(payees)}
    role_code = {r: i for i, r in enumerate(roles)}
    seqs = np.fromiter(map(seq_of.__getitem__, work_col), dtype=np.int64, count=len(items))
    pcodes = np.fromiter(map(payee_code.__getitem__, payee_col), dtype=np.int64, count=len(items))
    rcodes = np.fromiter(map(role_code.__getitem__, role_col), dtype=np.int64, count=len(items))
    # Stable, by work then payee then role: equal credits are adjacent, the first given first.
    order = np.lexsort((rcodes, pcodes, seqs))
    s_seq, s_p, s_r = seqs[order], pcodes[order], rcodes[order]
    first = np.ones(len(items), dtype=bool)
    first[1:] = (s_seq[1:] != s_seq[:-1]) | (s_p[1:] != s_p[:-1]) | (s_r[1:] != s_r[:-1])
    keep = np.sort(order[first])  # positions of the first copy of each credit, in input order
    if existing:
        taken = set(existing)
        payee_list, role_list = list(payees.values()), list(roles.values())
        keep = np.array(
            [i for i in keep.tolist() if (int(seqs[i]), *payee_list[pcodes[i]], *role_list[rcodes[i]]) not in taken],
            dtype=np.int64,
        )
    if len(keep) == 0:
        return 0
    kept_seqs = seqs[keep]
    work_seqs, per_work = np.unique(
        np.concatenate([kept_seqs, np.array([q for q, *_ in existing], dtype=np.int64)]), return_counts=True
    )
    if int(per_work.max()) > CREDITS_PER_WORK_MAX:
        worst = int(work_seqs[per_work.argmax()])
        wid = next(w for w, q in seq_of.items() if q == worst)
        raise ValidationError(f"work {wid} would have more than CREDITS_PER_WORK_MAX={CREDITS_PER_WORK_MAX} credits")
    # In work order (stable, so each work's credits keep their order): new works' credits append to the
    # end of uq_credits_role, which leads with the work's registration number.
    rows_at = keep[np.argsort(kept_seqs, kind="stable")]
    at = utc_now()
    by_payee = np.array(list(payees.values()), dtype=object).reshape(-1, 2)  # (person_id, name_id) per code
    by_role = np.array(list(roles.values()), dtype=object).reshape(-1, 2)  # (scheme, code) per code
    payee_cols, role_cols = by_payee[pcodes[rows_at]], by_role[rcodes[rows_at]]
    rows = list(
        zip(
            seqs[rows_at].tolist(),
            payee_cols[:, 0].tolist(),
            payee_cols[:, 1].tolist(),
            role_cols[:, 0].tolist(),
            role_cols[:, 1].tolist(),
            np.array(weight_col, dtype=object)[rows_at].tolist(),
            repeat(at),
        )
    )
    bulk_insert(conn, "credits", _CREDIT_COLUMNS, rows)
    append_audit(conn, "credits.added", "credits", {"count": len(rows)}, at=at)
    return len(rows)


def add_lineage(conn: Connection, work_id: str, parent_work_id: str, share: Fraction | None) -> None:
    """Record that ``work_id`` derives from ``parent_work_id``, passing ``share`` upstream (None: the
    agreement's default). Refuses cycles and explicit shares summing beyond one."""
    check_ids([work_id, parent_work_id], "lineage work id")
    for wid in (work_id, parent_work_id):
        if conn.execute(select(works.c.id).where(works.c.id == wid)).first() is None:
            raise NotFoundError(f"lineage names work {wid}, which is not registered")
    if work_id == parent_work_id:
        raise ValidationError("a work cannot derive from itself")
    if share is not None and not 0 <= share <= 1:
        raise ValidationError(f"lineage share {share} must be between 0 and 1")
    # Walking up from the parent must never reach the child.
    frontier, seen, depth = {parent_work_id}, set(), 0
    while frontier:
        if work_id in frontier:
            raise ValidationError(f"lineage {work_id} <- {parent_work_id} would make a cycle")
        depth += 1
        if depth > LINEAGE_DEPTH_MAX:
            raise ValidationError(f"lineage deeper than LINEAGE_DEPTH_MAX={LINEAGE_DEPTH_MAX}")
        seen |= frontier
        q = select(lineage.c.parent_work_id).where(lineage.c.work_id.in_(sorted(frontier)))
        frontier = {r.parent_work_id for r in conn.execute(q)} - seen
    stated = conn.execute(
        select(lineage.c.share_numerator, lineage.c.share_denominator).where(
            lineage.c.work_id == work_id, lineage.c.parent_work_id != parent_work_id
        )
    ).all()
    total = sum((Fraction(n, d) for n, d in stated if n is not None), Fraction(0)) + (share or 0)
    if total > 1:
        raise ValidationError(f"work {work_id} would pass {total} upstream, more than the whole")
    if conn.execute(
        select(lineage.c.work_id).where(lineage.c.work_id == work_id, lineage.c.parent_work_id == parent_work_id)
    ).first():
        raise ConflictError(f"lineage {work_id} <- {parent_work_id} already exists")
    at = utc_now()
    conn.execute(
        lineage.insert().values(
            work_id=work_id,
            parent_work_id=parent_work_id,
            created_at=at,
            share_numerator=share.numerator if share is not None else None,
            share_denominator=share.denominator if share is not None else None,
        )
    )
    append_audit(
        conn,
        "lineage.added",
        f"work:{work_id}",
        {"parent": parent_work_id, "share": str(share) if share is not None else None},
        at=at,
    )


# Reading works -------------------------------------------------------------------------------------
class WorkRow(NamedTuple):
    id: str
    seq: int
    title: str
    kind: str
    size_bytes: int
    source: str | None
    created_at: str


def work_rows(conn: Connection, work_ids: Sequence[str]) -> dict[str, WorkRow]:
    """The registered works among ``work_ids``, by id (an id that is not registered is absent)."""
    out: dict[str, WorkRow] = {}
    for part in chunks(sorted(set(work_ids))):
        q = select(
            works.c.id, works.c.seq, works.c.title, works.c.kind, works.c.size_bytes, works.c.source, works.c.created_at
        )
        out.update({r.id: WorkRow(*r) for r in conn.execute(q.where(works.c.id.in_(part)))})
    return out


def get_work(conn: Connection, work_id: str) -> WorkRow:
    """One registered work; ``NotFoundError`` (saying how to add it) when it is not registered."""
    row = work_rows(conn, [work_id]).get(work_id)
    if row is None:
        raise NotFoundError(f"work {work_id} is not registered: add it first with `endcredits works add`")
    return row


def work_exists(conn: Connection, work_id: str) -> bool:
    return bool(existing_work_ids(conn, [work_id]))


def has_lineage(conn: Connection, work_id: str, parent_work_id: str) -> bool:
    q = select(lineage.c.work_id).where(lineage.c.work_id == work_id, lineage.c.parent_work_id == parent_work_id)
    return conn.execute(q).first() is not None


def credited_on(conn: Connection, work_seq: int) -> list[tuple[str, str, str]]:
    """(role scheme, role code, credited name or person's handle) of every credit on one work, in order."""
    q = (
        select(credits.c.role_scheme, credits.c.role_code, names.c.name, people.c.handle)
        .join(names, names.c.id == credits.c.name_id, isouter=True)
        .join(people, people.c.id == credits.c.person_id, isouter=True)
        .where(credits.c.work_seq == work_seq)
        .order_by(credits.c.id)
    )
    return [(r.role_scheme, r.role_code, r.name if r.name is not None else r.handle) for r in conn.execute(q)]


# Duplicates: fingerprints and links to canonical works ---------------------------------------------
def existing_work_ids(conn: Connection, work_ids: Sequence[str]) -> set[str]:
    return {str(r[0]) for r in select_in(conn, "SELECT id FROM works WHERE id {in}", sorted(set(work_ids)))}


def add_fingerprint(conn: Connection, work_id: str, method: str, value: str, band_keys: Sequence[str]) -> None:
    check_id(work_id, "work id")
    """Store a work's perceptual fingerprint and its LSH band keys (computed by ``registry.fingerprints``)."""
    if conn.execute(select(work_fingerprints.c.work_id).where(work_fingerprints.c.work_id == work_id)).first():
        raise ConflictError(f"work {work_id} already has a fingerprint")
    conn.execute(
        work_fingerprints.insert(), [{"work_id": work_id, "method": method, "value": value, "created_at": utc_now()}]
    )
    keys = sorted(set(band_keys))
    if keys:
        conn.execute(fingerprint_bands.insert(), [{"method": method, "band_key": k, "work_id": work_id} for k in keys])


def fingerprint_candidates(conn: Connection, method: str, band_keys: Sequence[str], limit: int) -> dict[str, str]:
    """Fingerprints of works sharing at least one band key, most shared bands first, at most ``limit``."""
    keys = sorted(set(band_keys))
    if not keys:
        return {}
    q = (
        select(fingerprint_bands.c.work_id, func.count().label("n"))
        .where(fingerprint_bands.c.method == method, fingerprint_bands.c.band_key.in_(keys))
        .group_by(fingerprint_bands.c.work_id)
        .order_by(func.count().desc(), fingerprint_bands.c.work_id)
        .limit(limit)
    )
    ids = [r.work_id for r in conn.execute(q)]
    out: dict[str, str] = {}
    for part in chunks(ids):
        q2 = select(work_fingerprints.c.work_id, work_fingerprints.c.value).where(work_fingerprints.c.work_id.in_(part))
        out.update({r.work_id: r.value for r in conn.execute(q2)})
    return out


def linked_canonical(conn: Connection, work_ids: Iterable[str]) -> dict[str, str]:
    """The canonical work of each of ``work_ids`` that is a linked duplicate (others are absent)."""
    return {
        str(w): str(c)
        for w, c in select_in(
            conn,
            "SELECT work_id, canonical_work_id FROM work_links WHERE unlinked_at IS NULL AND work_id {in}",
            sorted(set(work_ids)),
        )
    }


def linked_duplicates(conn: Connection, canonical_ids: Iterable[str]) -> dict[str, list[str]]:
    """The linked duplicates of each canonical work, in the order they were linked."""
    out: dict[str, list[str]] = {}
    for c, w, _ in sorted(
        select_in(
            conn,
            "SELECT canonical_work_id, work_id, id FROM work_links WHERE unlinked_at IS NULL "
            "AND canonical_work_id {in}",
            sorted(set(canonical_ids)),
        ),
        key=lambda r: (r[0], r[2]),
    ):
        out.setdefault(str(c), []).append(str(w))
    return out


def active_links(conn: Connection) -> list[tuple[str, str, str, int | None]]:
    """Every link in force: (duplicate, canonical work, method, similarity in ppm)."""
    q = select(work_links.c.work_id, work_links.c.canonical_work_id, work_links.c.method, work_links.c.similarity_ppm)
    return [
        (r[0], r[1], r[2], r[3])
        for r in conn.execute(q.where(work_links.c.unlinked_at.is_(None)).order_by(work_links.c.id))
    ]


def link_works(
    conn: Connection, work_id: str, canonical_work_id: str, *, method: str, similarity_ppm: int | None, linked_by: str
) -> str:
    """Link ``work_id`` as a duplicate of ``canonical_work_id`` (or of that work's own canonical work).

    Returns the canonical work. Refused: an unknown work, a work already linked, a work that is itself
    the canonical work of others (unlink those first), a link to itself.
    """
    if linked_by not in ("fingerprint", "operator"):
        raise ValidationError(f"linked_by {linked_by!r} must be fingerprint or operator")
    if similarity_ppm is not None and not 0 <= similarity_ppm <= 1_000_000:
        raise ValidationError(f"similarity {similarity_ppm} ppm must be within 0..1000000")
    check_ids([work_id, canonical_work_id], "work id")
    missing = sorted({work_id, canonical_work_id} - existing_work_ids(conn, [work_id, canonical_work_id]))
    if missing:
        raise NotFoundError(f"work {missing[0]} is not registered: list works with `endcredits works list`")
    root = linked_canonical(conn, [canonical_work_id]).get(canonical_work_id, canonical_work_id)
    if root == work_id:
        raise ValidationError(f"work {work_id} cannot be linked to itself")
    current = linked_canonical(conn, [work_id]).get(work_id)
    if current is not None:
        raise ConflictError(
            f"work {work_id} is already linked to {current}: unlink it first (`endcredits works unlink`)"
        )
    dups = linked_duplicates(conn, [work_id]).get(work_id, [])
    if dups:
        raise ConflictError(
            f"work {work_id} is the canonical work of {len(dups)} linked duplicates, such as {dups[0]}: "
            "unlink them first"
        )
    invariant(linked_canonical(conn, [root]).get(root) is None, f"canonical work {root} is itself linked")
    at = utc_now()
    conn.execute(
        work_links.insert(),
        [
            {
                "work_id": work_id,
                "canonical_work_id": root,
                "method": method,
                "similarity_ppm": similarity_ppm,
                "linked_by": linked_by,
                "linked_at": at,
            }
        ],
    )
    append_audit(
        conn,
        "work.linked",
        f"work:{work_id}",
        {"canonical": root, "method": method, "similarity_ppm": similarity_ppm, "by": linked_by},
        at=at,
    )
    return root


def unlink_work(conn: Connection, work_id: str, *, reason: str) -> str:
    """Undo a link (a false match): ``work_id`` is its own work again. Returns the former canonical work.

    The link row is kept with ``unlinked_at`` and the reason; registering the same bytes again never
    re-links it.
    """
    why = clean_text(reason, "unlink reason", TITLE_LENGTH_MAX)
    check_id(work_id, "work id")
    canonical = linked_canonical(conn, [work_id]).get(work_id)
    if canonical is None:
        raise NotFoundError(f"work {work_id} is not linked to another work")
    at = utc_now()
    conn.execute(
        update(work_links)
        .where(work_links.c.work_id == work_id, work_links.c.unlinked_at.is_(None))
        .values(unlinked_at=at, unlink_reason=why)
    )
    append_audit(conn, "work.unlinked", f"work:{work_id}", {"canonical": canonical, "reason": why}, at=at)
    return canonical


@dataclass(frozen=True)
class GraphRows:
    credits: list[tuple[str, str, str, int]]  # work, payee, role, weight
    rights_holders: list[tuple[str, str]]  # work, payee
    parents: list[tuple[str, str, Fraction | None]]  # work, parent, share


def graph_rows(conn: Connection, work_ids: Iterable[str]) -> GraphRows:  # noqa: C901 - one pass over many independent checks
    """Credits, rights holders and lineage for ``work_ids`` and every ancestor of them.

    A work linked to a canonical work (a duplicate) and its canonical work are one work here: each of
    them gets the credits, rights holder and lineage of the whole group (canonical work first, then the
    duplicates in link order), each (payee, role) once, and a credited name claimed by a person credited
    in the same role counts once; so a payee is never paid twice for one work registered twice.
    """
    out = GraphRows([], [], [])
    frontier, seen = set(work_ids), set()
    while frontier:
        batch = sorted(frontier)
        seen |= frontier
        canon = linked_canonical(conn, batch)
        roots = sorted({canon.get(w, w) for w in batch})
        dups = linked_duplicates(conn, roots)
        members = {r: [r, *dups.get(r, [])] for r in roots}
        every = sorted({m for ms in members.values() for m in ms})
        by_work_credits: dict[str, list[tuple[str, str, int, int | None]]] = {}
        holders: dict[str, str] = {}
        parents_of: dict[str, list[tuple[str, Fraction | None]]] = {}
        name_nums: set[int] = set()
        for part in chunks(every):
            q = (
                select(
                    works.c.id.label("work_id"),
                    credits.c.person_id,
                    credits.c.name_id,
                    credits.c.role_scheme,
                    credits.c.role_code,
                    credits.c.weight,
                )
                .join(works, works.c.seq == credits.c.work_seq)
                .where(works.c.id.in_(part))
                .order_by(credits.c.id)
            )
            for c in conn.execute(q):
                payee = f"person:{c.person_id}" if c.person_id is not None else f"name:{c.name_id}"
                if c.name_id is not None:
                    name_nums.add(int(c.name_id))
                by_work_credits.setdefault(c.work_id, []).append(
                    (payee, f"{c.role_scheme}:{c.role_code}", c.weight, c.name_id)
                )
            for r in conn.execute(
                select(works.c.id, works.c.rights_holder_person_id, works.c.rights_holder_name_id).where(
                    works.c.id.in_(part)
                )
            ):
                if r.rights_holder_person_id is not None:
                    holders[r.id] = f"person:{r.rights_holder_person_id}"
                elif r.rights_holder_name_id is not None:
                    holders[r.id] = f"name:{r.rights_holder_name_id}"
            for r in conn.execute(
                select(lineage).where(lineage.c.work_id.in_(part)).order_by(lineage.c.parent_work_id)
            ):
                share = Fraction(r.share_numerator, r.share_denominator) if r.share_numerator is not None else None
                parents_of.setdefault(r.work_id, []).append((r.parent_work_id, share))
        claimed = (
            {
                int(n): int(p)
                for n, p in select_in(
                    conn, "SELECT id, person_id FROM names WHERE person_id IS NOT NULL AND id {in}", sorted(name_nums)
                )
            }
            if any(len(ms) > 1 for ms in members.values())
            else {}
        )
        parents_found: set[str] = set()
        for w in batch:
            group = members[canon.get(w, w)]
            taken: set[tuple[str, str]] = set()
            for m in group:
                for payee, role, weight, name_id in by_work_credits.get(m, []):
                    who = f"person:{claimed[name_id]}" if name_id is not None and name_id in claimed else payee
                    if (payee, role) in taken or (who, role) in taken:
                        continue
                    taken |= {(payee, role), (who, role)}
                    out.credits.append((w, payee, role, weight))
            holder = next((holders[m] for m in group if m in holders), None)
            if holder is not None:
                out.rights_holders.append((w, holder))
            parents_here: set[str] = set()
            for m in group:
                for parent, share in parents_of.get(m, []):
                    if parent in parents_here or parent in group:
                        continue
                    parents_here.add(parent)
                    out.parents.append((w, parent, share))
                    parents_found.add(parent)
        frontier = parents_found - seen
    return out


def _name_numbers(payees: list[str] | pa.Array) -> npt.NDArray[np.int64] | None:
    """The numbers of payees that are all ``name:<digits>`` (the usual accrual), parsed in C by Arrow;
    None when any payee is of another form, which the caller then parses one by one."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not len(payees):
        return None
    try:
        values = payees if isinstance(payees, pa.Array) else pa.array(payees, pa.string())
    except (UnicodeEncodeError, pa.ArrowException):  # not text Arrow takes: the general path says why
        return None
    if values.null_count:
        return None
    # ``^name:[0-9]{1,18}$`` without a regular expression (half the time): the prefix, then 1 to 18 ASCII digits.
    digits = pc.utf8_slice_codeunits(values, 5)
    if not pc.all(pc.starts_with(values, "name:")).as_py() or not pc.all(pc.ascii_is_decimal(digits)).as_py():
        return None
    if pc.max(pc.binary_length(digits)).as_py() > 18:
        return None
    numbers: npt.NDArray[np.int64] = pc.cast(digits, pa.int64()).to_numpy()
    return numbers


def payee_routes(conn: Connection, payees: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Where money for each payee goes now: (account kind, holder), e.g. ("payable", "person:3").

    A verified person is paid; an unverified one, an unclaimed name, or a work with nobody credited
    waits in escrow under its own holder; a name claimed by a person follows that person.
    """
    payees = list(payees)
    kinds, holders = route_columns(conn, payees)
    return dict(zip(payees, zip(kinds, holders)))


def route_columns(conn: Connection, payees: list[str]) -> tuple[list[str], list[str]]:
    """``payee_routes`` as two lists aligned with ``payees``: each one's account kind and holder.

    An accrual routes 10^5 names, nearly all unclaimed: when every payee is a name, the database counts
    the registered ones and returns only the claimed ones with their person's verification, and only
    those are looked at one by one."""
    only_names = _name_numbers(payees)
    if only_names is not None:
        kinds, holders = ["escrow"] * len(payees), list(payees)  # unclaimed: escrow under the name itself
        for i, kind, holder in _claimed_routes(conn, only_names):
            kinds[i], holders[i] = kind, holder
        return kinds, holders
    return _parsed_routes(conn, payees)


def route_arrays(conn: Connection, payees: pa.Array) -> tuple[pa.Array, pa.Array]:
    """``route_columns`` of a string array, as two string arrays: a batch of names is routed without a Python
    string per payee (an accrual routes 10^5-10^6 names, most of them new)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    only_names = _name_numbers(payees)
    if only_names is None:
        kinds_list, holders_list = _parsed_routes(conn, payees.to_pylist())
        return pa.array(kinds_list, pa.string()), pa.array(holders_list, pa.string())
    kinds = pa.array(["escrow"], pa.string()).take(pa.array(np.zeros(len(payees), dtype=np.int32)))
    holders = payees
    claimed = _claimed_routes(conn, only_names)
    if claimed:
        mask = np.zeros(len(payees), dtype=np.bool_)
        mask[[i for i, _, _ in claimed]] = True
        kinds = pc.replace_with_mask(kinds, pa.array(mask), pa.array([k for _, k, _ in claimed], pa.string()))
        holders = pc.replace_with_mask(holders, pa.array(mask), pa.array([h for _, _, h in claimed], pa.string()))
    return kinds, holders


def _claimed_routes(conn: Connection, numbers: npt.NDArray[np.int64]) -> list[tuple[int, str, str]]:
    """For payees that are all names (their ``numbers``): (position, kind, holder) of each one a person has
    claimed, in position order; every other name is routed to escrow under itself."""
    import numpy as np

    names = np.sort(numbers)  # distinct by sorting: np.unique's hash table took 0.75 s for 4 x 10^5
    names = names[np.concatenate(([True], names[1:] != names[:-1]))]
    claimed = _claimed_names(conn, names.tolist())
    if not claimed:
        return []
    out = []
    for i in np.flatnonzero(np.isin(numbers, np.fromiter(claimed, dtype=np.int64, count=len(claimed)))).tolist():
        owner_id, owner_ok = claimed[int(numbers[i])]
        out.append((i, "payable" if owner_ok else "escrow", f"person:{owner_id}"))
    return out


def _parsed_routes(conn: Connection, payees: list[str]) -> tuple[list[str], list[str]]:
    """``route_columns`` for payees of any form, parsed one by one."""
    name_nums: list[int] = []
    person_nums: list[int] = []
    for p in payees:
        kind, _, num = p.partition(":")
        if kind == "name" and num.isdigit():
            name_nums.append(int(num))
        elif kind == "person" and num.isdigit():
            person_nums.append(int(num))
        elif kind != "work":
            parse_payee(p)  # raises with the reason
    claimed = _claimed_names(conn, sorted(set(name_nums)))
    verified = {pid: at is not None for pid, _, at in people_verification(conn, person_nums)}
    if len(verified) != len(set(person_nums)):
        raise NotFoundError(f"payee person:{min(set(person_nums) - set(verified))} is not registered")
    kinds, holders = [], []
    for p in payees:
        kind, _, num = p.partition(":")
        person: int | None
        if kind == "work":
            person, ok = None, False
        elif kind == "person":
            person, ok = int(num), verified[int(num)]
        else:
            person, ok = claimed.get(int(num), (None, False))
        if person is None:
            kinds.append("escrow")
            holders.append(p)
        else:
            kinds.append("payable" if ok else "escrow")
            holders.append(f"person:{person}")
    return kinds, holders


def _claimed_names(conn: Connection, names: list[int]) -> dict[int, tuple[int, bool]]:
    """``name id -> (person id, verified)`` for the claimed ones among ``names`` (sorted, distinct); an
    unregistered name raises."""
    if not names:
        return {}
    # One pass over the names: their count, and the claimed ones as "id,person,verified" text joined by ";"
    # (an accrual routes 10^5-10^6 names, nearly all unclaimed; a second join took as long again).
    concat = "string_agg" if conn.dialect.name == "postgresql" else "group_concat"
    claimed_text = (
        "CASE WHEN n.person_id IS NOT NULL THEN "
        "CAST(n.id AS TEXT) || ',' || CAST(n.person_id AS TEXT) || ',' || "
        "CASE WHEN p.verified_at IS NULL THEN '0' ELSE '1' END END"
    )
    registered, claimed = select_joined(
        conn,
        f"SELECT COUNT(*), {concat}({claimed_text}, ';') FROM {{values}} JOIN names n ON n.id = v.value "
        "LEFT JOIN people p ON p.id = n.person_id",
        names,
    )[0]
    if registered != len(names):
        known = {int(r[0]) for r in select_in(conn, "SELECT id FROM names WHERE id {in}", names)}
        raise NotFoundError(f"payee name:{min(set(names) - known)} is not registered")
    out: dict[int, tuple[int, bool]] = {}
    for item in claimed.split(";") if claimed else ():
        name_id, owner, verified = item.split(",")
        out[int(name_id)] = (int(owner), verified == "1")
    return out


def lineage_parents(conn: Connection) -> dict[str, list[str]]:
    """Every lineage link: each derived work's parent works, sorted."""
    out: dict[str, list[str]] = {}
    for r in conn.execute(
        select(lineage.c.work_id, lineage.c.parent_work_id).order_by(lineage.c.work_id, lineage.c.parent_work_id)
    ):
        out.setdefault(r.work_id, []).append(r.parent_work_id)
    return out


def derived_works(conn: Connection, work_ids: Sequence[str]) -> dict[str, str]:
    """Every work derived from ``work_ids`` through lineage, any number of hops down, mapped to the
    upstream work it derives from (the first one reached, breadth first); the given works are not included.

    Linked duplicates count as the same content: a work's canonical work and the other members of its
    group are reached too (a manifest lists the group by its canonical work), and so is what derives
    from any of them. Lineage is a DAG (``add_lineage`` refuses cycles); the walk is bounded by
    ``LINEAGE_DEPTH_MAX`` hops anyway.
    """
    from endcredits.limits import LINEAGE_DEPTH_MAX

    origin = {w: w for w in work_ids}
    frontier = sorted(origin)
    for _ in range(LINEAGE_DEPTH_MAX):
        if not frontier:
            break
        found: list[str] = []

        def reach(work: str, source: str, found: list[str] = found) -> None:
            if work not in origin:
                origin[work] = origin[source]
                found.append(work)

        for part in chunks(frontier):
            q = select(lineage.c.work_id, lineage.c.parent_work_id).where(lineage.c.parent_work_id.in_(part))
            for r in sorted(conn.execute(q), key=lambda r: (r.parent_work_id, r.work_id)):
                reach(r.work_id, r.parent_work_id)
            # The group: a duplicate reaches its canonical work, a canonical work its duplicates.
            linked = select(work_links.c.work_id, work_links.c.canonical_work_id).where(
                work_links.c.unlinked_at.is_(None),
                or_(work_links.c.work_id.in_(part), work_links.c.canonical_work_id.in_(part)),
            )
            for r in sorted(conn.execute(linked), key=lambda r: (r.work_id, r.canonical_work_id)):
                if r.work_id in origin:
                    reach(r.canonical_work_id, r.work_id)
                if r.canonical_work_id in origin:
                    reach(r.work_id, r.canonical_work_id)
        frontier = sorted(found)
    given = set(work_ids)
    return {w: o for w, o in origin.items() if w not in given}


def works_of_person(conn: Connection, person_id: int) -> list[str]:
    """Works crediting the person directly or through a name they claimed."""
    from endcredits.store.schema import credits, names, works

    direct = select(works.c.id).join(credits, credits.c.work_seq == works.c.seq).where(credits.c.person_id == person_id)
    via_names = (
        select(works.c.id)
        .join(credits, credits.c.work_seq == works.c.seq)
        .join(names, names.c.id == credits.c.name_id)
        .where(names.c.person_id == person_id)
    )
    return sorted({r.id for r in conn.execute(direct)} | {r.id for r in conn.execute(via_names)})


def credited_people(conn: Connection, work_ids: Sequence[str]) -> dict[str, set[str]]:
    """For each of ``work_ids``: the ids (as text) of the people credited on it, directly or through a name
    they claimed. A work crediting nobody who is registered maps to an empty set."""
    from endcredits.store.schema import credits, names, works

    out: dict[str, set[str]] = {w: set() for w in work_ids}
    for part in chunks(sorted(set(work_ids))):
        q = (
            select(works.c.id, credits.c.person_id, names.c.person_id.label("name_person"))
            .join(credits, credits.c.work_seq == works.c.seq)
            .outerjoin(names, names.c.id == credits.c.name_id)
            .where(works.c.id.in_(part))
        )
        for r in conn.execute(q):
            person = r.person_id if r.person_id is not None else r.name_person
            if person is not None:
                out[r.id].add(str(person))
    return out
