"""Who an issuer vouches for: the people holding a valid credential it issued.

endcredits models a guild or a union as a credential issuer the operator trusts (``trust``); its members
are the people to whom one of its credentials is attached and still valid (not marked invalid by
``refresh_verification``). A guild's suspension of consent reaches exactly these people.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, select

from endcredits.store.bulk import chunks
from endcredits.store.schema import credentials


def issuers_of_people(conn: Connection, person_ids: Iterable[int]) -> dict[int, list[str]]:
    """For each of ``person_ids`` holding a valid credential: the issuers of those credentials, sorted."""
    out: dict[int, set[str]] = {}
    for part in chunks(sorted(set(person_ids))):
        q = select(credentials.c.person_id, credentials.c.issuer).where(
            credentials.c.person_id.in_(part), credentials.c.invalid_at.is_(None)
        )
        for r in conn.execute(q):
            out.setdefault(int(r.person_id), set()).add(str(r.issuer))
    return {p: sorted(issuers) for p, issuers in out.items()}


def members_of_issuer(conn: Connection, issuer: str) -> list[int]:
    """The people holding a valid credential from ``issuer``, by id."""
    q = select(credentials.c.person_id).where(credentials.c.issuer == issuer, credentials.c.invalid_at.is_(None))
    return sorted({int(r.person_id) for r in conn.execute(q)})


def issuer_known(conn: Connection, issuer: str) -> bool:
    """True when some recorded credential, valid or not, was issued by ``issuer``."""
    return conn.execute(select(credentials.c.id).where(credentials.c.issuer == issuer).limit(1)).first() is not None
