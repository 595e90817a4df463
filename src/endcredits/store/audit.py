"""Appending to and reading the hash-chained audit log (see ``endcredits.audit``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import Connection, select

from endcredits.audit import GENESIS_SHA256, AuditEntry, canonical_json, entry_sha256
from endcredits.errors import LimitExceededError
from endcredits.limits import AUDIT_PAYLOAD_BYTES_MAX
from endcredits.store.engine import utc_now
from endcredits.store.schema import audit_log


def append_audit(
    conn: Connection, kind: str, subject: str, payload: Mapping[str, Any], *, at: str | None = None
) -> AuditEntry:
    """Append one entry inside the caller's write transaction (writers are serialized by ``Store.write``)."""
    body = canonical_json(dict(payload))
    if len(body.encode()) > AUDIT_PAYLOAD_BYTES_MAX:
        raise LimitExceededError(f"audit payload for {kind} {subject} exceeds AUDIT_PAYLOAD_BYTES_MAX")
    last = conn.execute(select(audit_log.c.seq, audit_log.c.sha256).order_by(audit_log.c.seq.desc()).limit(1)).first()
    seq, prev = (last.seq + 1, last.sha256) if last else (1, GENESIS_SHA256)
    when = at or utc_now()
    sha = entry_sha256(prev, seq, when, kind, subject, body)
    conn.execute(
        audit_log.insert(),
        [
            {
                "seq": seq,
                "at": when,
                "kind": kind,
                "subject": subject,
                "payload": body,
                "prev_sha256": prev,
                "sha256": sha,
            }
        ],
    )
    return AuditEntry(seq, when, kind, subject, body, prev, sha)


def iter_audit(conn: Connection, *, kind: str | None = None, chunk_rows: int = 10_000) -> Iterator[AuditEntry]:
    """Entries in sequence order, read in bounded chunks."""
    after = 0
    while True:
        q = select(audit_log).where(audit_log.c.seq > after).order_by(audit_log.c.seq).limit(chunk_rows)
        if kind is not None:
            q = q.where(audit_log.c.kind == kind)
        rows = conn.execute(q).all()
        if not rows:
            return
        for r in rows:
            yield AuditEntry(r.seq, r.at, r.kind, r.subject, r.payload, r.prev_sha256, r.sha256)
        after = rows[-1].seq
