"""What a guild sees of its members: aggregates only, and the unclaimed residuals it can help claim.

A trusted guild's members are the people holding a valid credential it issued. ``guild_view`` sums, per
currency, what accrual credited them, what they may be paid now and what escrow and funds hold for them,
and counts, per use, the members whose own grants allow or refuse it now; it never names a member. Below
``AGGREGATE_MEMBERS_MIN`` members a sum would be one person's figure, so the amounts are withheld.
``guild_unclaimed`` is the published list (``ledger.expiry.published_unclaimed``) cut to the members' lines.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from endcredits.consent.guilds import guild_terms_in_force
from endcredits.consent.records import grants_for
from endcredits.consent.rules import USES
from endcredits.errors import ValidationError
from endcredits.ledger import parse_account_key
from endcredits.ledger.expiry import PUBLISHED_ROWS_MAX, Unclaimed, published_unclaimed
from endcredits.ledger.records import account_balances, accrued_by_account
from endcredits.ledger.training_fees import TRANSFER_CODE as TRAINING_FEE
from endcredits.registry.identity.members import members_of_issuer
from endcredits.registry.identity.trusted import check_trusted
from endcredits.store.schema import names

AGGREGATE_MEMBERS_MIN = 3
"""Fewest members for which a guild sees sums of money: fewer, and a sum tells one person's earnings."""


@dataclass(frozen=True)
class GuildView:
    issuer: str
    members: int
    terms_version: int | None
    accrued_microunits: dict[str, int] | None  # per currency; None: withheld (too few members)
    payable_microunits: dict[str, int] | None
    escrow_microunits: dict[str, int] | None
    fund_microunits: dict[str, int] | None
    consent: dict[str, dict[str, int]]  # use -> {"allowed": members, "notAllowed": members}

    def to_json(self) -> dict[str, Any]:
        def money(v: dict[str, int] | None) -> dict[str, str] | None:
            return None if v is None else {c: str(a) for c, a in sorted(v.items())}

        return {
            "issuer": self.issuer,
            "members": self.members,
            "terms_version": self.terms_version,
            "withheld_below_members": AGGREGATE_MEMBERS_MIN,
            "accrued_microunits": money(self.accrued_microunits),
            "payable_microunits": money(self.payable_microunits),
            "escrow_microunits": money(self.escrow_microunits),
            "fund_microunits": money(self.fund_microunits),
            "consent": self.consent,
        }


def _member_holders(conn: Connection, members: list[int]) -> set[str]:
    """The ledger holders that are members: ``person:P`` and every name a member claimed (``name:N``)."""
    holders = {f"person:{p}" for p in members}
    if members:
        q = select(names.c.id).where(names.c.person_id.in_(members))
        holders |= {f"name:{r.id}" for r in conn.execute(q)}
    return holders


def _sum_by_currency(balances: dict[str, int], holders: set[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, amount in balances.items():
        _, holder, currency = parse_account_key(key)
        held_for = str(holder).partition("/")[2] if "/" in str(holder) else holder  # a fund's FUND/HOLDER
        if held_for in holders:
            out[currency] = out.get(currency, 0) + amount
    return out


def _consent_counts(conn: Connection, members: list[int], at: dt.datetime) -> dict[str, dict[str, int]]:
    """Per use, how many members' own grants in force at ``at`` allow it, and how many refuse it."""
    said: dict[str, dict[str, set[str]]] = {}
    for _, g in grants_for(conn, [], [str(p) for p in members]):
        if g.in_force(at):
            said.setdefault(g.use, {"allowed": set(), "notAllowed": set()})[g.decision].add(g.subject_id)
    return {u: {d: len(who) for d, who in said[u].items()} for u in USES if u in said}


def guild_view(conn: Connection, issuer: str, at: dt.datetime) -> GuildView:
    """The aggregates a trusted guild sees of its members (see the module doc); refused for an issuer the
    operator does not trust."""
    check_trusted(conn, issuer)
    members = members_of_issuer(conn, issuer)
    holders = _member_holders(conn, members)
    terms = guild_terms_in_force(conn, at).get(issuer)
    shown = len(members) >= AGGREGATE_MEMBERS_MIN

    def of(balances: dict[str, int]) -> dict[str, int] | None:
        return _sum_by_currency(balances, holders) if shown else None

    credited = accrued_by_account(conn, codes=("accrual", TRAINING_FEE))  # residuals and training fees
    accrued = {k: v for k, v in credited.items() if k.startswith(("payable:", "escrow:"))}
    return GuildView(
        issuer=issuer,
        members=len(members),
        terms_version=terms.version if terms else None,
        accrued_microunits=of(accrued),
        payable_microunits=of(account_balances(conn, kind="payable")),
        escrow_microunits=of(account_balances(conn, kind="escrow")),
        fund_microunits=of(account_balances(conn, kind="fund")),
        consent=_consent_counts(conn, members, at),
    )


def guild_unclaimed(conn: Connection, issuer: str, query: str = "", *, limit: int = 100) -> list[Unclaimed]:
    """The published unclaimed lines held for a trusted guild's members (as people or by claimed names),
    largest first, whose name contains ``query``."""
    check_trusted(conn, issuer)
    if not 1 <= limit <= PUBLISHED_ROWS_MAX:
        raise ValidationError(f"limit must be between 1 and {PUBLISHED_ROWS_MAX}")
    holders = _member_holders(conn, members_of_issuer(conn, issuer))
    rows = published_unclaimed(conn, query, limit=PUBLISHED_ROWS_MAX)
    return [r for r in rows if r.holder in holders][:limit]


__all__ = ["AGGREGATE_MEMBERS_MIN", "GuildView", "guild_unclaimed", "guild_view"]
