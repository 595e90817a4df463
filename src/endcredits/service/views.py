"""What the API and the portal both show: a person (who they are, their balances), and unclaimed
residuals (names and amounts; holders' ids only to those who need them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from endcredits.ledger.escrow import search_escrow
from endcredits.ledger.records import account_balances
from endcredits.money import format_amount
from endcredits.registry.private import with_payout_account
from endcredits.registry.records import get_person, names_of_person, work_titles
from endcredits.service.auth import Principal
from endcredits.store.engine import Store


def person_view(store: Store, person_id: int) -> dict[str, Any]:
    """The person's handle and verification, whether a payout account is on file, and per currency what
    is payable to them and what escrow holds for them and the names they claimed."""
    with store.read() as conn:
        p = get_person(conn, person_id)
        banked = person_id in with_payout_account(conn, [person_id])
        holders = [f"person:{person_id}"] + [f"name:{i}" for i, _name in names_of_person(conn, person_id)]
        totals: dict[str, dict[str, int]] = {"payable": {}, "escrow": {}}
        for kind in ("payable", "escrow"):
            for key, value in account_balances(conn, kind=kind, holders=holders).items():
                ccy = key.rsplit(":", 1)[1]
                totals[kind][ccy] = totals[kind].get(ccy, 0) + value
    return {
        "person_id": p.id,
        "handle": p.handle,
        "verified": p.verified_at is not None,
        "verified_by": p.verified_by,
        "payout_account": banked,
        **{kind: {c: format_amount(v, c) for c, v in per.items()} for kind, per in totals.items()},
    }


def sees_holders(who: Principal) -> bool:
    """Whether ``who`` sees which account holds each unclaimed amount (``name:7``, ``person:3``,
    ``work:SHA``): operators who read everything or release escrow (scopes read, payouts) and auditors,
    who need the ids to link a name to a person. The public and contributors see names and amounts only:
    the ids are internal, and would tell a contributor who else is registered."""
    return who.can("read") or who.can("payouts")


@dataclass(frozen=True)
class EscrowRow:
    name: str  # a credited name, a person's handle, or a work's title
    currency: str
    amount_microunits: int
    holder: str | None  # only for callers who ``sees_holders``


def escrow_rows(store: Store, who: Principal, query: str, *, limit: int) -> list[EscrowRow]:
    """Unclaimed residuals whose shown name contains ``query``, largest first. Money held for a work nobody
    is credited on shows the work's title, never its id; an id matches no query."""
    with store.read() as conn:
        found = search_escrow(conn, query, limit=limit)
        titles = work_titles(conn, [h.holder.removeprefix("work:") for h in found if h.holder.startswith("work:")])
    rows = []
    needle = query.casefold()
    for h in found:
        name = h.display_name
        if h.holder.startswith("work:"):
            name = f"{titles.get(h.holder.removeprefix('work:'), 'a work')} (work, nobody credited yet)"
        if needle in name.casefold():
            rows.append(EscrowRow(name, h.currency, h.balance_microunits, h.holder if sees_holders(who) else None))
    return rows
