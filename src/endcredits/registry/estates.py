"""Deceased people and their estates: who speaks for a person who can no longer consent.

A person may be recorded deceased, with the date and the estate, another registered person (an executor, an
heir, a foundation registered as a person). From then on consent for them is given and revoked by the estate
(``consent.records`` checks it); grants they gave while alive stay as they were. The record is written once:
a second, different record is refused, so who speaks for the dead never changes silently.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, select, update

from endcredits.errors import ConflictError, ValidationError
from endcredits.registry.records import get_person
from endcredits.store.audit import append_audit
from endcredits.store.bulk import chunks
from endcredits.store.engine import format_time, parse_time
from endcredits.store.schema import people


@dataclass(frozen=True)
class Estate:
    """Person ``person_id`` died at ``deceased_at``; person ``estate_person_id`` consents for them."""

    person_id: int
    deceased_at: dt.datetime
    estate_person_id: int


def record_death(conn: Connection, person_id: int, *, deceased_at: dt.datetime, estate_person_id: int) -> Estate:
    """Record that ``person_id`` died at ``deceased_at`` and that ``estate_person_id`` now grants and revokes
    consent for them. The same record again is a no-op; a different one is refused. Audited."""
    when = format_time(deceased_at)
    if person_id == estate_person_id:
        raise ValidationError(f"person {person_id} cannot be their own estate: name another registered person")
    row = get_person(conn, person_id)
    estate = get_person(conn, estate_person_id)
    if estate.deceased_at is not None:
        raise ValidationError(
            f"person {estate_person_id} is recorded deceased and cannot act as an estate: name a living person"
        )
    if row.deceased_at is not None:
        if (row.deceased_at, row.estate_person_id) == (when, estate_person_id):
            return Estate(person_id, parse_time(when), estate_person_id)
        raise ConflictError(
            f"person {person_id} is already recorded deceased at {row.deceased_at} with estate person "
            f"{row.estate_person_id}; the record is not changed"
        )
    conn.execute(
        update(people).where(people.c.id == person_id).values(deceased_at=when, estate_person_id=estate_person_id)
    )
    append_audit(
        conn, "person.deceased", f"person:{person_id}", {"deceased_at": when, "estate_person": estate_person_id}
    )
    return Estate(person_id, parse_time(when), estate_person_id)


def estates_of(conn: Connection, person_ids: Iterable[int]) -> dict[int, Estate]:
    """The estate of each of ``person_ids`` recorded deceased (the living are left out)."""
    out: dict[int, Estate] = {}
    for part in chunks(sorted(set(person_ids))):
        q = select(people.c.id, people.c.deceased_at, people.c.estate_person_id).where(
            people.c.id.in_(part), people.c.deceased_at.is_not(None)
        )
        for r in conn.execute(q):
            out[int(r.id)] = Estate(int(r.id), parse_time(r.deceased_at), int(r.estate_person_id))
    return out
