"""Payout rows the edges read: the batches and how their items stand."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select

from endcredits.store.schema import payout_batches, payout_items


def payout_batch_rows(conn: Connection, *, newest_first: bool = False, limit: int | None = None) -> list[Any]:
    """Payout batch rows by creation time (oldest first unless ``newest_first``), at most ``limit``."""
    order = payout_batches.c.created_at.desc() if newest_first else payout_batches.c.created_at
    q = select(payout_batches).order_by(order, payout_batches.c.id)
    return list(conn.execute(q if limit is None else q.limit(limit)).all())


def payout_item_statuses(conn: Connection, batch_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per batch: how many of its items are in each status."""
    out: dict[str, dict[str, int]] = {}
    q = select(payout_items.c.batch_id, payout_items.c.status).where(payout_items.c.batch_id.in_(list(batch_ids)))
    for r in conn.execute(q):
        per_batch = out.setdefault(r.batch_id, {})
        per_batch[r.status] = per_batch.get(r.status, 0) + 1
    return out
