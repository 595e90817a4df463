"""Reads of the payout tables the edges need: the batches and how their items stand (the writes live with
the batch rules in ``batches``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, select

from endcredits.registry.records import check_list_limit
from endcredits.store.schema import payout_batches, payout_items


@dataclass(frozen=True)
class PayoutBatchSummary:
    batch_id: str
    status: str
    items: int
    total_microunits: int
    currency: str
    created_at: str


def payout_batches_list(conn: Connection, *, limit: int, newest_first: bool = False) -> list[PayoutBatchSummary]:
    """Payout batches in the order they were created (newest first if asked); at most ``limit``."""
    order = payout_batches.c.created_at.desc() if newest_first else payout_batches.c.created_at
    q = select(payout_batches).order_by(order, payout_batches.c.id).limit(check_list_limit(limit))
    return [
        PayoutBatchSummary(r.id, r.status, int(r.item_count), int(r.total_microunits), r.currency, r.created_at)
        for r in conn.execute(q)
    ]


def payout_item_statuses(conn: Connection, batch_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per batch: how many of its items are in each status."""
    out: dict[str, dict[str, int]] = {}
    q = select(payout_items.c.batch_id, payout_items.c.status).where(payout_items.c.batch_id.in_(list(batch_ids)))
    for r in conn.execute(q):
        per_batch = out.setdefault(r.batch_id, {})
        per_batch[r.status] = per_batch.get(r.status, 0) + 1
    return out
