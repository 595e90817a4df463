"""Consent grants and suspensions: stored, revoked or lifted (never deleted), audited.

A deceased person's consent is given and revoked by their estate (``registry.estates``): a grant or a
revocation for them must name the estate person as ``granted_by`` / ``by``. A suspension by an issuer
(a guild) must name an issuer that issued some recorded credential.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from endcredits.consent.rules import Grant, Suspension
from endcredits.errors import ConflictError, ConsentError, NotFoundError, ValidationError
from endcredits.registry.estates import estates_of
from endcredits.registry.identity.members import issuer_known
from endcredits.store.audit import append_audit
from endcredits.store.bulk import chunks
from endcredits.store.engine import format_time, parse_time, utc_now
from endcredits.store.schema import consent_grants, consent_suspensions, people, works


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


def _check_speaker(conn: Connection, subject_kind: str, subject_id: str, by: str | None, what: str) -> None:
    """A grant or revocation for a person is made by them, or, once they are recorded deceased, by their
    estate; one that names ``by`` for anyone else is refused."""
    estate = estates_of(conn, [int(subject_id)]).get(int(subject_id)) if subject_kind == "person" else None
    if estate is None:
        if by is not None and (subject_kind != "person" or by != subject_id):
            raise ConsentError(
                f"{what} for {subject_kind} {subject_id} names person {by} as acting for them, but the registry "
                "records no estate for them: only a deceased person's estate acts for them"
            )
        return
    if by != str(estate.estate_person_id):
        raise ConsentError(
            f"person {subject_id} is recorded deceased ({estate.deceased_at.isoformat()}): {what} for them comes "
            f"from their estate, person {estate.estate_person_id} (say so with --by {estate.estate_person_id})"
        )


def add_grants(conn: Connection, grants: Sequence[Grant]) -> list[int]:
    """Store grants (each already validated by ``Grant``); returns their ids."""
    at = utc_now()
    ids = []
    for g in grants:
        _subject_exists(conn, g.subject_kind, g.subject_id)
        _check_speaker(conn, g.subject_kind, g.subject_id, g.granted_by, "consent")
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
                        use_description=g.use_description,
                        project=g.project,
                        granted_by_person_id=int(g.granted_by) if g.granted_by is not None else None,
                    )
                    .returning(consent_grants.c.id)
                ).scalar_one()
            )
        )
    if grants:
        append_audit(conn, "consent.granted", "consent", {"ids": ids[:1000], "count": len(ids)}, at=at)
    return ids


def revoke_grant(conn: Connection, grant_id: int, at: datetime, *, by: str | None = None) -> Grant:
    """Revoke a grant from ``at``; for a deceased subject ``by`` must be their estate person's id."""
    row = conn.execute(select(consent_grants).where(consent_grants.c.id == grant_id)).first()
    if row is None:
        raise NotFoundError(f"no consent grant {grant_id}: list them with `endcredits consent list`")
    _check_speaker(conn, row.subject_kind, row.subject_id, by, "a revocation")
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
        use_description=r.use_description,
        project=r.project,
        granted_by=str(r.granted_by_person_id) if r.granted_by_person_id is not None else None,
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


# Suspensions -------------------------------------------------------------------------------------
def add_suspension(conn: Connection, suspension: Suspension) -> int:
    """Store a suspension (already validated by ``Suspension``) of a registered person, or of an issuer
    that issued some recorded credential; returns its id. Audited."""
    if suspension.subject_kind == "person":
        _subject_exists(conn, "person", suspension.subject_id)
        if int(suspension.subject_id) in estates_of(conn, [int(suspension.subject_id)]):
            raise ConsentError(
                f"person {suspension.subject_id} is recorded deceased: their estate revokes their grants instead"
            )
    elif not issuer_known(conn, suspension.subject_id):
        raise NotFoundError(
            f"no recorded credential was issued by {suspension.subject_id}: an issuer suspends for the people "
            "holding its credentials (attach them with `endcredits credential attach`)"
        )
    at = utc_now()
    sid = int(
        conn.execute(
            consent_suspensions.insert()
            .values(
                subject_kind=suspension.subject_kind,
                subject_id=suspension.subject_id,
                uses=",".join(suspension.uses),
                starts_at=format_time(suspension.starts_at),
                ends_at=format_time(suspension.ends_at) if suspension.ends_at else None,
                reason=suspension.reason,
                created_at=at,
            )
            .returning(consent_suspensions.c.id)
        ).scalar_one()
    )
    append_audit(
        conn,
        "consent.suspended",
        f"suspension:{sid}",
        {
            "subject": f"{suspension.subject_kind}:{suspension.subject_id}",
            "uses": list(suspension.uses),
            "starts_at": format_time(suspension.starts_at),
            "ends_at": format_time(suspension.ends_at) if suspension.ends_at else None,
            "reason": suspension.reason,
        },
        at=at,
    )
    return sid


def _to_suspension(r: Any) -> Suspension:
    end = r.ends_at
    return Suspension(
        subject_kind=r.subject_kind,
        subject_id=r.subject_id,
        uses=tuple(u for u in r.uses.split(",") if u),
        starts_at=parse_time(r.starts_at),
        ends_at=parse_time(end) if end else None,
        reason=r.reason,
    )


def get_suspension(conn: Connection, suspension_id: int) -> Suspension:
    row = conn.execute(select(consent_suspensions).where(consent_suspensions.c.id == suspension_id)).first()
    if row is None:
        raise NotFoundError(f"no suspension {suspension_id}: list them with `endcredits consent suspensions`")
    return _to_suspension(row)


def lift_suspension(conn: Connection, suspension_id: int, at: datetime) -> Suspension:
    """End a suspension at ``at`` (after its start, before any end it already has). Audited."""
    current = get_suspension(conn, suspension_id)
    if not at > current.starts_at:
        raise ValidationError(
            f"suspension {suspension_id} starts at {current.starts_at.isoformat()}; lift it at a later time"
        )
    if current.ends_at is not None and not at < current.ends_at:
        raise ConflictError(f"suspension {suspension_id} already ends at {current.ends_at.isoformat()}")
    when = format_time(at)
    conn.execute(update(consent_suspensions).where(consent_suspensions.c.id == suspension_id).values(ends_at=when))
    append_audit(conn, "consent.suspension_lifted", f"suspension:{suspension_id}", {"ends_at": when})
    return get_suspension(conn, suspension_id)


def suspensions_list(
    conn: Connection, *, person_ids: Iterable[str] | None = None, issuers: Iterable[str] | None = None
) -> list[tuple[int, Suspension]]:
    """Suspensions by id: of the given people and issuers, or every one when neither is given."""
    q = select(consent_suspensions).order_by(consent_suspensions.c.id)
    if person_ids is None and issuers is None:
        return [(int(r.id), _to_suspension(r)) for r in conn.execute(q)]
    out: list[tuple[int, Suspension]] = []
    for kind, ids in (("person", sorted(set(person_ids or ()))), ("issuer", sorted(set(issuers or ())))):
        for part in chunks(ids):
            rows = conn.execute(
                q.where(consent_suspensions.c.subject_kind == kind, consent_suspensions.c.subject_id.in_(part))
            )
            out.extend((int(r.id), _to_suspension(r)) for r in rows)
    return sorted(out, key=lambda item: item[0])
