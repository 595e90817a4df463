"""The service's own rows besides keys and sessions (``auth``): the recorded answer to each usage batch,
which makes ``POST /usage-batches`` idempotent by batch id."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from endcredits.store.engine import utc_now
from endcredits.store.schema import usage_requests


@dataclass(frozen=True)
class UsageAnswer:
    request_sha256: str
    response: dict[str, Any]


def usage_answer(conn: Connection, batch_id: str) -> UsageAnswer | None:
    """What was answered to the usage batch ``batch_id``, and the hash of its request; None when new."""
    row = conn.execute(select(usage_requests).where(usage_requests.c.batch_id == batch_id)).first()
    if row is None:
        return None
    return UsageAnswer(str(row.request_sha256), json.loads(row.response_json))


def record_usage_answer(conn: Connection, batch_id: str, request_sha256: str, response: dict[str, Any]) -> None:
    """Keep the answer to a usage batch, unless one is already kept for its id (the first one stays), except
    that the answer of the request that accrued it (``created``) replaces an ``exists`` answer kept by the
    same request sent again meanwhile, which found the batch committed before the first was answered."""
    kept = usage_answer(conn, batch_id)
    body = json.dumps(response, sort_keys=True)
    if kept is None:
        conn.execute(
            usage_requests.insert().values(
                batch_id=batch_id, request_sha256=request_sha256, response_json=body, created_at=utc_now()
            )
        )
    elif (
        kept.request_sha256 == request_sha256
        and kept.response.get("status") == "exists"
        and response.get("status") == "created"
    ):
        conn.execute(usage_requests.update().where(usage_requests.c.batch_id == batch_id).values(response_json=body))
