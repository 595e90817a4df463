"""Reads of the payout tables the edges need (the writes live with the batch rules in ``batches``)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from endcredits.registry.records import check_list_limit
from endcredits.store.schema import payout_batches


@dataclass(frozen=True)
class PayoutBatchSummary:
    batch_id: str
    status: str
    items: int
    total_microunits: int
    currency: str
    created_at: str


def payout_batches_list(conn: Connection, *, limit: int) -> list[PayoutBatchSummary]:
    """Payout batches in the order they were created; at most ``limit``."""
    q = select(payout_batches).order_by(payout_batches.c.created_at, payout_batches.c.id).limit(check_list_limit(limit))
    return [
        PayoutBatchSummary(r.id, r.status, int(r.item_count), int(r.total_microunits), r.currency, r.created_at)
        for r in conn.execute(q)
    ]
