"""``balance_totals``: every account kind summed per currency, and conservation, after real accruals,
a claim and a payout-shaped transfer; on both backends."""

from __future__ import annotations

from endcredits.ledger import TransferRequest
from endcredits.ledger.accrue import accrue
from endcredits.ledger.escrow import claim_escrow
from endcredits.ledger.records import BalanceTotals, balance_totals, post_transfer
from endcredits.registry.records import verify_person
from endcredits.store.engine import Store
from helpers_money import EXTERNAL, World, agreement, balances, on_time


def _by_kind(store: Store, currency: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in balances(store, currency=currency).items():
        kind = key.split(":", 1)[0]
        out[kind] = out.get(kind, 0) + value
    return out


def _totals(store: Store) -> dict[str, BalanceTotals]:
    with store.read() as conn:
        return balance_totals(conn)


def test_totals_follow_accruals_claims_and_payouts_and_conserve(store: Store) -> None:
    assert _totals(store) == {}
    w = World(store)
    eur, usd = agreement(pool_rate="0.30"), agreement(pool_rate="0.5", currency="USD", agreement_id="usd")
    scores = {w.song: 0.5, w.film: 0.3, w.orphan: 0.2}
    s1 = accrue(store, w.usage([("o1", 1_000_000_007, on_time(3), scores)], eur), eur, event_id="b1", source=EXTERNAL)
    s2 = accrue(store, w.usage([("o2", 10**18 + 3, on_time(3), scores)], eur), eur, event_id="b2", source=EXTERNAL)
    s3 = accrue(store, w.usage([("o3", 777, on_time(4), scores)], usd), usd, event_id="b3", source=EXTERNAL)
    totals = _totals(store)  # the accruals' legs are still in pending segments: read through
    assert list(totals) == ["EUR", "USD"]
    t = totals["EUR"]
    assert t.pool_microunits == s1.pool_microunits + s2.pool_microunits
    assert totals["USD"].pool_microunits == s3.pool_microunits
    kinds = _by_kind(store, "EUR")
    assert (t.payable_microunits, t.escrow_microunits, t.suspense_microunits) == (
        kinds["payable"],
        kinds["escrow"],
        kinds["suspense"],
    )
    assert t.conserved and totals["USD"].conserved and t.escrow_microunits > 0 and t.paid_microunits > 0

    # A claim moves escrow to payable; a payout moves payable to clearing: the pool stays where it was.
    with store.write() as conn:
        verify_person(conn, w.dan, verified_by="test-guild")
    claim_escrow(store, w.dan)
    owed = balances(store, kind="payable", holder=f"person:{w.alice}")[f"payable:person:{w.alice}:EUR"]
    with store.write() as conn:
        post_transfer(
            conn,
            TransferRequest(
                event_id="pay-1",
                code="payout_sent",
                currency="EUR",
                legs={f"payable:person:{w.alice}:EUR": -owed, "clearing:payouts:EUR": owed},
            ),
        )
    after = _totals(store)["EUR"]
    assert after.pool_microunits == t.pool_microunits and after.conserved
    assert after.escrow_microunits < t.escrow_microunits and after.clearing_microunits == owed
    assert after.paid_microunits == t.paid_microunits + (t.escrow_microunits - after.escrow_microunits)
    assert after.to_json()["paid_microunits"] == after.paid_microunits


def test_conserved_is_false_when_the_parts_do_not_add_up() -> None:
    t = BalanceTotals("EUR", 100, 60, 30, 0, 9, 0, 0)
    assert t.paid_microunits == 60 and not t.conserved
    assert BalanceTotals("EUR", 100, 60, 30, 0, 9, 1, 0).conserved
    # What a fund holds past the escrow period counts: pool = paid + escrow + fund + suspense.
    assert BalanceTotals("EUR", 100, 60, 20, 10, 9, 1, 0).conserved
    assert not BalanceTotals("EUR", 100, 60, 20, 0, 9, 1, 0).conserved
