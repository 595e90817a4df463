"""Consent grants: stored, revoked (never deleted), audited."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from endcredits.consent.rules import Grant
from endcredits.errors import ConflictError, NotFoundError
from endcredits.store.audit import append_audit
from endcredits.store.bulk import chunks
from endcredits.store.engine import format_time, parse_time, utc_now
from endcredits.store.schema import consent_grants, people, works


def _subject_exists(conn: Connection, kind: str, subject_id: str) -> None:
    if kind == "work":
        found = conn.execute(select(works.c.id).where(works.c.id == subject_id)).first()
    else:
        found = (
            conn.execute(select(people.c.id).where(people.c.id == int(subject_id))).first()
            if subject_id.isdigit()
            else None
        )
    if found is None:
        raise NotFoundError(f"consent names {kind} {subject_id}, which is not registered")


def add_grants(conn: Connection, grants: Sequence[Grant]) -> list[int]:
    """Store grants (each already validated by ``Grant``); returns their ids."""
    at = utc_now()
    ids = []
    for g in grants:
        _subject_exists(conn, g.subject_kind, g.subject_id)
        ids.append(
            int(
                conn.execute(
                    consent_grants.insert()
                    .values(
                        subject_kind=g.subject_kind,
                        subject_id=g.subject_id,
                        use=g.use,
                        decision=g.decision,
                        valid_from=format_time(g.valid_from),
                        valid_until=format_time(g.valid_until) if g.valid_until else None,
                        perpetual=g.perpetual,
                        source=g.source,
                        created_at=at,
                        revoked_at=format_time(g.revoked_at) if g.revoked_at else None,
                    )
                    .returning(consent_grants.c.id)
                ).scalar_one()
            )
        )
    if grants:
        append_audit(conn, "consent.granted", "consent", {"ids": ids[:1000], "count": len(ids)}, at=at)
    return ids


def revoke_grant(conn: Connection, grant_id: int, at: datetime) -> Grant:
    row = conn.execute(select(consent_grants).where(consent_grants.c.id == grant_id)).first()
    if row is None:
        raise NotFoundError(f"no consent grant {grant_id}: list them with `endcredits consent list`")
    if row.revoked_at is not None:
        raise ConflictError(f"consent grant {grant_id} was already revoked at {row.revoked_at}")
    when = format_time(at)
    conn.execute(update(consent_grants).where(consent_grants.c.id == grant_id).values(revoked_at=when))
    append_audit(
        conn,
        "consent.revoked",
        f"grant:{grant_id}",
        {"subject": f"{row.subject_kind}:{row.subject_id}", "use": row.use, "revoked_at": when},
    )
    return _to_grant(row, revoked_at=when)


def grant_subject(conn: Connection, grant_id: int) -> tuple[str, str] | None:
    """``(subject_kind, subject_id)`` of a grant, or None when there is no such grant."""
    q = select(consent_grants.c.subject_kind, consent_grants.c.subject_id).where(consent_grants.c.id == grant_id)
    row = conn.execute(q).first()
    return None if row is None else (str(row.subject_kind), str(row.subject_id))


def _to_grant(r: Any, *, revoked_at: str | None = None) -> Grant:
    revoked = revoked_at or r.revoked_at
    return Grant(
        subject_kind=r.subject_kind,
        subject_id=r.subject_id,
        use=r.use,
        decision=r.decision,
        valid_from=parse_time(r.valid_from),
        valid_until=parse_time(r.valid_until) if r.valid_until else None,
        perpetual=bool(r.perpetual),
        source=r.source,
        revoked_at=parse_time(revoked) if revoked else None,
    )


def grants_for(conn: Connection, work_ids: Iterable[str], person_ids: Iterable[str]) -> list[tuple[int, Grant]]:
    out: list[tuple[int, Grant]] = []
    for kind, ids in (("work", sorted(set(work_ids))), ("person", sorted(set(person_ids)))):
        for part in chunks(ids):
            q = select(consent_grants).where(
                consent_grants.c.subject_kind == kind, consent_grants.c.subject_id.in_(part)
            )
            out.extend((r.id, _to_grant(r)) for r in conn.execute(q.order_by(consent_grants.c.id)))
    return out
