"""What the API and the portal both show of a person: who they are and their balances."""

from __future__ import annotations

from typing import Any

from endcredits.ledger.records import account_balances
from endcredits.money import format_amount
from endcredits.registry.private import with_payout_account
from endcredits.registry.records import get_person, names_of_person
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
