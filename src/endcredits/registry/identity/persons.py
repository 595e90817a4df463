"""Verified humans: a Person is verified while they hold an unexpired, unrevoked credential from a
trusted issuer.

``attach_credential`` verifies a credential and records it against a person, who becomes verified by
its issuer. ``refresh_verification`` re-verifies every recorded credential at a given time and
un-verifies the people none of whose credentials still hold. Both run inside the caller's write
transaction and audit every change; on any error nothing is written.

Two rules keep one human from being paid twice: a credential belongs to one person, and a credential
subject (the DID or URN the issuer vouched for) belongs to one person. A credential without
``validUntil`` is refused here: verification that never ends is not a default.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import rfc8785
from sqlalchemy import Connection, func, select, update

from endcredits.errors import ConflictError, CredentialError, ValidationError
from endcredits.registry.identity.credential import VerifiedCredential, verify_credential
from endcredits.registry.identity.trust import TrustList
from endcredits.registry.records import get_person
from endcredits.store.audit import append_audit
from endcredits.store.engine import format_time
from endcredits.store.schema import credentials, people

DEFINITIVE_REASONS = frozenset(
    {"expired", "revoked", "suspended", "untrusted_issuer", "signature", "malformed", "unsupported", "not_yet_valid"}
)
"""Failures that un-verify on refresh. ``status_unknown`` is not one: a missing status list file is the
operator's mistake, so refresh stops and changes nothing instead."""


@dataclass(frozen=True)
class Attached:
    person_id: int
    credential: VerifiedCredential
    new: bool


def attach_credential(
    conn: Connection,
    person_id: int,
    credential_json: str | bytes | Mapping[str, Any],
    trust: TrustList,
    status_lists: Mapping[str, Mapping[str, Any]],
    at: dt.datetime,
) -> Attached:
    """Verify ``credential_json`` at ``at`` and record it for ``person_id``, who becomes verified by its
    issuer. Re-attaching the same credential to the same person is a no-op (or revives it if refresh had
    marked it invalid and it verifies again)."""
    get_person(conn, person_id)
    vc = verify_credential(credential_json, trust, status_lists, at)
    if vc.id is None:
        raise CredentialError("malformed", "a credential attached to a person needs an 'id' to be revoked by")
    if vc.valid_until is None:
        raise CredentialError(
            "unsupported",
            f"credential {vc.id} has no validUntil: endcredits verifies people "
            "only on credentials that end; ask the issuer for one with validUntil",
        )
    when = format_time(at)
    row = conn.execute(select(credentials).where(credentials.c.credential_id == vc.id)).first()
    if row is not None and row.person_id != person_id:
        raise ConflictError(f"credential {vc.id} is already attached to person {row.person_id}")
    holder = conn.execute(
        select(credentials.c.person_id).where(credentials.c.subject == vc.subject, credentials.c.person_id != person_id)
    ).first()
    if holder is not None:
        raise ConflictError(f"subject {vc.subject} already belongs to person {holder.person_id}: one human, one person")
    new = row is None
    if new:
        status = vc.status[0] if vc.status else None
        conn.execute(
            credentials.insert().values(
                person_id=person_id,
                credential_id=vc.id,
                issuer=vc.issuer,
                subject=vc.subject,
                valid_from=format_time(vc.valid_from) if vc.valid_from else None,
                valid_until=format_time(vc.valid_until),
                status_list=status.list_id if status else None,
                status_index=status.index if status else None,
                credential_json=rfc8785.dumps(vc.document).decode(),
                added_at=when,
            )
        )
        append_audit(
            conn,
            "credential.attached",
            f"person:{person_id}",
            {
                "credential": vc.id,
                "issuer": vc.issuer,
                "subject": vc.subject,
                "valid_until": format_time(vc.valid_until),
            },
            at=when,
        )
    elif row is not None and row.invalid_at is not None:
        conn.execute(update(credentials).where(credentials.c.id == row.id).values(invalid_at=None, invalid_reason=None))
        append_audit(conn, "credential.revalidated", f"person:{person_id}", {"credential": vc.id}, at=when)
    conn.execute(update(people).where(people.c.id == person_id).values(verified_at=when, verified_by=vc.issuer))
    append_audit(
        conn, "person.verified", f"person:{person_id}", {"verified_by": vc.issuer, "credential": vc.id}, at=when
    )
    return Attached(person_id, vc, new)


@dataclass(frozen=True)
class Unverified:
    person_id: int
    credential_id: str
    reason: str


def refresh_verification(
    conn: Connection, at: dt.datetime, trust: TrustList, status_lists: Mapping[str, Mapping[str, Any]]
) -> list[Unverified]:
    """Re-verify every recorded, still-valid credential at ``at``; mark those that fail and un-verify the
    people left without a valid one. Returns who lost verification and why. People verified without a
    credential (the operator's word, ``people verify``) are left as they are.

    All credentials are checked before anything is written, so a missing status list stops the refresh
    with nothing changed."""
    if len(trust) == 0:
        raise ValidationError(
            "refresh needs the trust list: with no trusted issuer every person would lose verification"
        )
    rows = conn.execute(
        select(credentials)
        .where(credentials.c.invalid_at.is_(None))
        .order_by(credentials.c.person_id, credentials.c.id)
    ).all()
    failed: dict[int, str] = {}
    for r in rows:
        try:
            verify_credential(r.credential_json, trust, status_lists, at)
        except CredentialError as exc:
            if exc.reason not in DEFINITIVE_REASONS:
                raise
            failed[r.id] = exc.reason
    when = format_time(at)
    holding: dict[int, list[Any]] = {}
    for r in rows:
        holding.setdefault(r.person_id, []).append(r)
    out = []
    for person_id, held in holding.items():
        for r in held:
            if r.id in failed:
                conn.execute(
                    update(credentials)
                    .where(credentials.c.id == r.id)
                    .values(invalid_at=when, invalid_reason=failed[r.id])
                )
                append_audit(
                    conn,
                    "credential.invalidated",
                    f"person:{person_id}",
                    {"credential": r.credential_id, "reason": failed[r.id]},
                    at=when,
                )
        if all(r.id in failed for r in held):
            last = held[-1]
            person = get_person(conn, person_id)
            if person.verified_at is not None:
                conn.execute(update(people).where(people.c.id == person_id).values(verified_at=None, verified_by=None))
                append_audit(
                    conn,
                    "person.unverified",
                    f"person:{person_id}",
                    {"credential": last.credential_id, "reason": failed[last.id]},
                    at=when,
                )
            out.append(Unverified(person_id, last.credential_id, failed[last.id]))
        else:
            best = next(r for r in reversed(held) if r.id not in failed)
            person = get_person(conn, person_id)
            if person.verified_by != best.issuer:
                conn.execute(update(people).where(people.c.id == person_id).values(verified_by=best.issuer))
                append_audit(
                    conn,
                    "person.verified",
                    f"person:{person_id}",
                    {"verified_by": best.issuer, "credential": best.credential_id},
                    at=when,
                )
    return out


def credentialed_people_count(conn: Connection) -> int:
    """How many people hold at least one attached credential."""
    return int(conn.execute(select(func.count(credentials.c.person_id.distinct()))).scalar_one())
