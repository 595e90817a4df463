"""Agreements as stored: each version's TOML text and its SHA-256, never changed once loaded."""

from __future__ import annotations

from sqlalchemy import Connection, select

from endcredits.errors import ConflictError, NotFoundError
from endcredits.royalties.agreement import Agreement, parse_agreement
from endcredits.store.audit import append_audit
from endcredits.store.engine import utc_now
from endcredits.store.schema import agreements


def save_agreement(conn: Connection, agreement_id: str, version: int, body: str, body_sha256: str) -> str:
    """Store an agreement version; re-loading the same text is a no-op, other text under the same
    version is refused (publish a new version instead)."""
    row = conn.execute(select(agreements).where(agreements.c.id == f"{agreement_id}@{version}")).first()
    if row is not None:
        if row.body_sha256 != body_sha256:
            raise ConflictError(f"agreement {agreement_id} version {version} exists with other terms; bump the version")
        return "exists"
    at = utc_now()
    conn.execute(
        agreements.insert().values(
            id=f"{agreement_id}@{version}", version=version, body=body, body_sha256=body_sha256, created_at=at
        )
    )
    append_audit(conn, "agreement.loaded", f"{agreement_id}@{version}", {"sha256": body_sha256}, at=at)
    return "created"


def load_agreement_body(conn: Connection, agreement_id: str, version: int | None = None) -> str:
    q = select(agreements.c.body, agreements.c.version).where(agreements.c.id.like(f"{agreement_id}@%"))
    rows = [r for r in conn.execute(q) if version is None or r.version == version]
    if not rows:
        raise NotFoundError(
            f"no agreement {agreement_id}"
            + (f" version {version}" if version else "")
            + ": load it with `endcredits agreement load FILE`"
        )
    return str(max(rows, key=lambda r: r.version).body)


def load_agreement(conn: Connection, agreement_id: str, version: int | None = None) -> Agreement:
    """An agreement's terms, parsed: ``version``, or its newest version."""
    return parse_agreement(load_agreement_body(conn, agreement_id, version))


def newest_agreements(conn: Connection) -> dict[str, Agreement]:
    """Every stored agreement id's newest version, parsed, by id."""
    newest: dict[str, tuple[int, str]] = {}
    for row in conn.execute(select(agreements.c.id, agreements.c.version, agreements.c.body)):
        agreement_id = str(row.id).rpartition("@")[0]
        if agreement_id not in newest or row.version > newest[agreement_id][0]:
            newest[agreement_id] = (int(row.version), str(row.body))
    return {agreement_id: parse_agreement(body) for agreement_id, (_, body) in sorted(newest.items())}
