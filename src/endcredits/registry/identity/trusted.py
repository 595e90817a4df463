"""The operator's recorded trust list: the issuers (guilds, unions) trusted to speak for their members.

Checking a credential needs the issuer's key, given with ``--trust`` at the time (``trust.py``). Speaking for
members is more: a trusted issuer may publish terms its members inherit (``consent.guilds``) and see their
aggregates. That trust is the operator's standing decision, so it is stored here: an issuer id exactly as
credentials name it (``did:key:...``, ``did:web:...``, an ``https`` id). Removing an issuer stamps
``removed_at`` (its terms then apply to nobody); adding it again clears the stamp. Every change is audited.
"""

from __future__ import annotations

from sqlalchemy import Connection, select, update

from endcredits.errors import CredentialError, ValidationError
from endcredits.limits import TITLE_LENGTH_MAX, check_id
from endcredits.store.audit import append_audit
from endcredits.store.engine import utc_now
from endcredits.store.schema import trusted_issuers

TRUSTED_ISSUERS_MAX = 10_000
"""Most issuers the operator may trust at once."""


def trust_issuer(conn: Connection, issuer: str, *, note: str) -> bool:
    """Record that the operator trusts ``issuer`` to speak for its members; False when it already was."""
    check_id(issuer, "issuer id", spaces=False)
    if not isinstance(note, str) or not 1 <= len(note.strip()) <= len(note) <= TITLE_LENGTH_MAX:
        raise ValidationError(f"say why the issuer is trusted: a note of 1..{TITLE_LENGTH_MAX} characters")
    row = conn.execute(select(trusted_issuers).where(trusted_issuers.c.issuer == issuer)).first()
    if row is not None and row.removed_at is None:
        return False
    if len(trusted_issuer_ids(conn)) >= TRUSTED_ISSUERS_MAX:
        raise ValidationError(f"the operator already trusts TRUSTED_ISSUERS_MAX={TRUSTED_ISSUERS_MAX} issuers")
    at = utc_now()
    if row is None:
        conn.execute(trusted_issuers.insert().values(issuer=issuer, note=note, added_at=at, removed_at=None))
    else:
        q = update(trusted_issuers).where(trusted_issuers.c.issuer == issuer)
        conn.execute(q.values(note=note, added_at=at, removed_at=None))
    append_audit(conn, "identity.issuer_trusted", f"issuer:{issuer}", {"note": note}, at=at)
    return True


def distrust_issuer(conn: Connection, issuer: str) -> None:
    """Stop trusting ``issuer``: its terms no longer apply to anyone. Refused when it is not trusted."""
    check_trusted(conn, issuer)
    at = utc_now()
    conn.execute(update(trusted_issuers).where(trusted_issuers.c.issuer == issuer).values(removed_at=at))
    append_audit(conn, "identity.issuer_distrusted", f"issuer:{issuer}", {}, at=at)


def trusted_issuer_ids(conn: Connection) -> list[str]:
    """Every issuer the operator trusts now, sorted."""
    q = select(trusted_issuers.c.issuer).where(trusted_issuers.c.removed_at.is_(None))
    return sorted(str(r.issuer) for r in conn.execute(q))


def check_trusted(conn: Connection, issuer: str) -> str:
    """``issuer`` when the operator trusts it; else a one-line ``CredentialError`` (``untrusted_issuer``)."""
    check_id(issuer, "issuer id", spaces=False)
    q = select(trusted_issuers.c.issuer).where(
        trusted_issuers.c.issuer == issuer, trusted_issuers.c.removed_at.is_(None)
    )
    if conn.execute(q).first() is None:
        raise CredentialError(
            "untrusted_issuer",
            f"issuer {issuer} is not on the operator's trust list: add it with `endcredits guild trust {issuer}`",
        )
    return issuer


def trusted_list(conn: Connection) -> list[dict[str, str | None]]:
    """Every issuer ever trusted, with its note and when it was added (and removed)."""
    rows = conn.execute(select(trusted_issuers).order_by(trusted_issuers.c.issuer)).all()
    return [{"issuer": r.issuer, "note": r.note, "added_at": r.added_at, "removed_at": r.removed_at} for r in rows]


__all__ = [
    "TRUSTED_ISSUERS_MAX",
    "check_trusted",
    "distrust_issuer",
    "trust_issuer",
    "trusted_issuer_ids",
    "trusted_list",
]
