"""Licence floor rows: what an accrual group paid beyond its pool, line by line, and the term behind it.

``royalties.floors`` decides the top-ups; the accrual posts them in the group's one transfer (the pool
account funds them, as it funds the pool) and keeps one row per topped-up line here, in the same database
transaction. ``verify`` re-adds them to the group's legs; statements show each with its licence term
(``consent.terms``).
Rows grow with the lines a floor raised, not with the outputs.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from endcredits.store.bulk import chunks
from endcredits.store.schema import licence_floors


@dataclass(frozen=True)
class FloorLine:
    """``amount_microunits`` paid to ``payee`` (into ``account``) by accrual group ``event_id`` to raise
    ``attributed_work``'s share of ``output_id`` to licence term ``term_id``'s floor."""

    event_id: str
    output_id: str
    model_id: str
    occurred_at: str
    attributed_work: str
    source_work: str
    payee: str
    role: str
    account: str
    term_id: int
    amount_microunits: int


def record_floor_lines(conn: Connection, lines: Sequence[FloorLine]) -> None:
    """Store an accrual group's floor lines (inside its write transaction)."""
    for part in chunks(list(lines)):
        conn.execute(licence_floors.insert(), [asdict(x) for x in part])


def _line(r: Any) -> FloorLine:
    return FloorLine(
        r.event_id, r.output_id, r.model_id, r.occurred_at, r.attributed_work, r.source_work, r.payee, r.role,
        r.account, int(r.term_id), int(r.amount_microunits),
    )  # fmt: skip


def floor_lines_of(conn: Connection, event_ids: Collection[str]) -> list[FloorLine]:
    """Every floor line of the accrual groups ``event_ids``, by group then id."""
    out: list[FloorLine] = []
    for part in chunks(sorted(set(event_ids))):
        q = select(licence_floors).where(licence_floors.c.event_id.in_(part))
        out.extend(_line(r) for r in conn.execute(q.order_by(licence_floors.c.event_id, licence_floors.c.id)))
    return out


def floor_line_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(licence_floors)).scalar_one())
