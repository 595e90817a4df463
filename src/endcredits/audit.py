"""The audit log's hash chain: each entry commits to the one before it.

``entry_sha256(prev, seq, at, kind, subject, payload)`` is SHA-256 over a canonical JSON of the entry and
the previous entry's hash; the first entry's previous hash is ``GENESIS_SHA256``. Changing, removing or
reordering any entry breaks every hash after it, which ``verify_chain`` reports by sequence number.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS_SHA256 = "0" * 64


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text: the same value always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_sha256(prev_sha256: str, seq: int, at: str, kind: str, subject: str, payload: str) -> str:
    body = canonical_json(
        {"at": at, "kind": kind, "payload": payload, "prev": prev_sha256, "seq": seq, "subject": subject}
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str
    kind: str
    subject: str
    payload: str
    prev_sha256: str
    sha256: str

    def payload_data(self) -> Mapping[str, Any]:
        data = json.loads(self.payload)
        return data if isinstance(data, dict) else {"value": data}


def verify_chain(entries: Iterable[AuditEntry]) -> list[str]:
    """Problems found walking the chain in sequence order; an empty list means it is intact."""
    problems: list[str] = []
    prev = GENESIS_SHA256
    expected_seq = 1
    for e in entries:
        if e.seq != expected_seq:
            problems.append(f"audit entry {expected_seq} is missing (found {e.seq} next)")
            expected_seq = e.seq
        if e.prev_sha256 != prev:
            problems.append(f"audit entry {e.seq} does not follow entry {e.seq - 1} (previous hash differs)")
        if entry_sha256(e.prev_sha256, e.seq, e.at, e.kind, e.subject, e.payload) != e.sha256:
            problems.append(f"audit entry {e.seq} ({e.kind} {e.subject}) was altered: its hash does not match")
        prev = e.sha256
        expected_seq += 1
    return problems
