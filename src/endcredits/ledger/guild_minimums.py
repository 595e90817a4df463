"""Guild minimum rows: which guild term raised the role weight behind an accrual group's lines.

``royalties.shares`` applies a member's guild minimum role weight where it is higher than the agreement's;
the raised weights are in the lines themselves (and in the credit shares the evidence keeps), so the money
re-derives without these rows. The accrual keeps one row per (payee, source work, role) of a group that a
minimum raised, in the group's database transaction, so a statement line can say which term applied.
``verify`` checks that each row belongs to an accrual group and names a stored version of guild terms.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sqlalchemy import Connection, func, select

from endcredits.royalties import Agreement
from endcredits.royalties.shares import GuildMinimum
from endcredits.royalties.usage import UsageBatch
from endcredits.store.bulk import chunks
from endcredits.store.schema import guild_minimums


@dataclass(frozen=True)
class GuildMinimumLine:
    """In accrual group ``event_id``, ``payee``'s credit as ``role`` on ``source_work`` was weighted by
    guild ``issuer``'s minimum ``weight_min`` (terms version ``terms_version``), not the agreement's
    ``agreement_weight``."""

    event_id: str
    payee: str
    source_work: str
    role: str
    issuer: str
    terms_version: int
    weight_min: int
    agreement_weight: int

    @property
    def label(self) -> str:
        """The statement's words: ``guild minimum weight ebu:actor=5 (guild terms of ISSUER v2)``."""
        return GuildMinimum(self.issuer, self.terms_version, self.role, self.weight_min).label


def group_minimum_lines(event_id: str, usage: UsageBatch, agreement: Agreement) -> list[GuildMinimumLine]:
    """The rows for the guild minimums behind ``usage``'s lines (one accrual group), by (payee, work, role)."""
    applied: Mapping[tuple[str, str, str], GuildMinimum] = usage.guild_minimums
    if not applied or usage.source_codes is None or usage.role_codes is None:
        return []
    triples = np.unique(np.stack([usage.payee_codes, usage.source_codes, usage.role_codes], axis=1), axis=0)
    out = []
    for p, w, r in triples.tolist():
        key = (usage.payees[p], usage.works[w] if w >= 0 else "", usage.roles[r] if r >= 0 else "")
        m = applied.get(key)
        if m is not None:
            scheme, _, code = m.role.partition(":")
            weight = agreement.role_weight(scheme, code)
            out.append(GuildMinimumLine(event_id, *key, m.issuer, m.version, m.weight, weight))
    return sorted(out, key=lambda x: (x.payee, x.source_work, x.role))


def record_minimum_lines(conn: Connection, lines: Sequence[GuildMinimumLine]) -> None:
    """Store an accrual group's guild minimum rows (inside its write transaction)."""
    for part in chunks(list(lines)):
        conn.execute(guild_minimums.insert(), [asdict(x) for x in part])


def minimum_lines_of(conn: Connection, event_ids: Collection[str]) -> list[GuildMinimumLine]:
    """Every guild minimum row of the accrual groups ``event_ids``, by group then id."""
    out: list[GuildMinimumLine] = []
    c = guild_minimums.c
    for part in chunks(sorted(set(event_ids))):
        q = select(guild_minimums).where(c.event_id.in_(part)).order_by(c.event_id, c.id)
        out.extend(
            GuildMinimumLine(
                r.event_id,
                r.payee,
                r.source_work,
                r.role,
                r.issuer,
                int(r.terms_version),
                int(r.weight_min),
                int(r.agreement_weight),
            )  # fmt: skip
            for r in conn.execute(q)
        )
    return out


def minimum_line_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(guild_minimums)).scalar_one())


__all__ = ["GuildMinimumLine", "group_minimum_lines", "minimum_line_count", "minimum_lines_of", "record_minimum_lines"]
