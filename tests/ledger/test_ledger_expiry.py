"""Escrow that keeps its promises: unclaimed money is published from the day it is owed, moves past its
agreement's period to the fund the agreement names — exactly the expired deposits, once, audited — and is
still paid to whoever claims it later. Every microunit stays accounted for."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from endcredits.errors import ConflictError, LedgerError, ValidationError
from endcredits.ledger import reversal_of
from endcredits.ledger.accrue import accrue
from endcredits.ledger.escrow import claim_escrow, release_work_escrow
from endcredits.ledger.expiry import (
    escrow_schedule,
    expire_escrow,
    published_unclaimed,
    save_agreement_terms,
    unclaimed_csv,
)
from endcredits.ledger.records import balance_totals, load_transfer, post_transfer
from endcredits.ledger.verify import verify
from endcredits.registry.records import CreditIn, add_credits, claim_name
from endcredits.royalties import Agreement, parse_agreement
from endcredits.store.audit import iter_audit
from endcredits.store.engine import Store
from helpers_money import EXTERNAL, World, agreement_text, balances, on_time, people, row_counts

FUND = "actors-fund"


def terms(period_days: int = 30, fund: str | None = FUND, version: int = 1) -> Agreement:
    text = agreement_text(pool_rate="0.5", version=version)
    line = f"escrow_period_days = {period_days}" + (f'\nescrow_expiry_fund = "{fund}"' if fund else "")
    return parse_agreement(text.replace("escrow_period_days = 1095", line))


def accrue_on(
    monkeypatch: pytest.MonkeyPatch, w: World, day: str, batch: str, ag: Agreement, scores: dict[str, float]
) -> None:
    """Accrue one output as if the batch were posted on ``day`` (the day its money is owed from)."""
    monkeypatch.setattr("endcredits.ledger.accrue.utc_now", lambda: f"{day}T09:00:00.000000Z")
    accrue(w.store, w.usage([(f"o-{batch}", 10**9 + 7, on_time(1), scores)], ag), ag, event_id=batch, source=EXTERNAL)
    monkeypatch.undo()


def conserved(store: Store) -> None:
    """pool = paid + escrow + fund + suspense, to the microunit, and verify re-derives everything."""
    with store.read() as conn:
        (t,) = balance_totals(conn).values()
    assert t.pool_microunits == t.paid_microunits + t.escrow_microunits + t.fund_microunits + t.suspense_microunits
    assert t.conserved
    report = verify(store)
    assert report.ok, report.problems


@pytest.fixture
def world(store: Store, monkeypatch: pytest.MonkeyPatch) -> tuple[World, dict[str, int], dict[str, int]]:
    """Two batches a month apart under a 30-day period: what each put in escrow, per account."""
    w = World(store)
    ag = terms()
    accrue_on(monkeypatch, w, "2025-01-10", "b1", ag, {w.song: 0.6, w.film: 0.4})
    first = {k: v for k, v in balances(store, kind="escrow").items() if v}
    accrue_on(monkeypatch, w, "2025-03-01", "b2", ag, {w.song: 1.0, w.film: 1.0})
    second = {k: v - first.get(k, 0) for k, v in balances(store, kind="escrow").items()}
    return w, first, second


def test_unclaimed_money_is_published_from_the_day_it_is_owed(
    world: tuple[World, dict[str, int], dict[str, int]],
) -> None:
    w, first, second = world
    bob = f"escrow:name:{w.bob}:EUR"
    with w.store.read() as conn:
        (held,) = [h for h in escrow_schedule(conn) if h.account == bob]
        rows = published_unclaimed(conn, "bob")
    assert (held.owed_since, held.due_on, held.fund) == (dt.date(2025, 1, 10), dt.date(2025, 2, 9), FUND)
    assert held.amount_microunits == first[bob] + second[bob]
    (row,) = rows
    assert (row.name, row.status, row.amount_microunits) == ("Bob Credited", "escrow", first[bob] + second[bob])
    assert (row.owed_since, row.due_on, row.fund) == (dt.date(2025, 1, 10), dt.date(2025, 2, 9), FUND)


def test_expiry_moves_exactly_the_expired_deposits_once_and_audited(
    world: tuple[World, dict[str, int], dict[str, int]],
) -> None:
    w, first, second = world
    store = w.store
    before = row_counts(store)
    assert expire_escrow(store, dt.date(2025, 2, 8)).transfers == ()  # one day before the first deadline
    assert row_counts(store) == before
    preview = expire_escrow(store, dt.date(2025, 2, 9), dry_run=True)
    assert row_counts(store) == before and preview.transfers == ()
    result = expire_escrow(store, dt.date(2025, 2, 9))
    assert {(e.account, e.amount_microunits) for e in result.moved} == set(first.items())
    assert {(e.account, e.amount_microunits) for e in preview.moved} == set(first.items())
    b = balances(store)
    for key, amount in first.items():
        holder = key.removeprefix("escrow:").removesuffix(":EUR")
        assert b[f"fund:{FUND}/{holder}:EUR"] == amount
        assert b[key] == second[key]  # the later deposit is still running
    (event_id,) = result.transfers
    with store.read() as conn:
        transfer = load_transfer(conn, event_id)
        audited = [json.loads(e.payload) for e in iter_audit(conn, kind="escrow.expired")]
    assert transfer.code == "escrow_expiry" and sum(transfer.legs.values()) == 0
    assert audited == [
        {
            "as_of": "2025-02-09",
            "fund": FUND,
            "currency": "EUR",
            "holders": 2,
            "amount_microunits": str(sum(first.values())),
        }
    ]
    conserved(store)
    # Idempotent: the same date, or a later one before the next deadline, moves nothing and writes nothing.
    after = row_counts(store)
    assert expire_escrow(store, dt.date(2025, 2, 9)).transfers == ()
    assert expire_escrow(store, dt.date(2025, 3, 30)).moved == ()
    assert row_counts(store) == after
    # The second batch's deposits go at their own deadline, and then the escrow is empty.
    assert {(e.account, e.amount_microunits) for e in expire_escrow(store, dt.date(2025, 3, 31)).moved} == set(
        second.items()
    )
    assert not any(balances(store, kind="escrow").values())
    conserved(store)


def test_a_claim_after_expiry_is_honoured_from_the_fund(world: tuple[World, dict[str, int], dict[str, int]]) -> None:
    w, first, second = world
    store = w.store
    expire_escrow(store, dt.date(2025, 2, 9))
    bob = f"escrow:name:{w.bob}:EUR"
    with store.read() as conn:
        shown = {r.status: r for r in published_unclaimed(conn, "Bob")}
    assert shown["fund"].amount_microunits == first[bob] and shown["fund"].fund == FUND
    assert shown["escrow"].amount_microunits == second[bob]
    (bob_person,) = people(store, "bob-the-performer")
    with store.write() as conn:
        claim_name(conn, w.bob, bob_person)
    claim = claim_escrow(store, bob_person)
    assert claim.moved_microunits == {"EUR": first[bob] + second[bob]}
    codes = []
    with store.read() as conn:
        codes = sorted(load_transfer(conn, t).code for t in claim.transfers)
    assert codes == ["escrow_claim", "fund_claim"]
    b = balances(store)
    assert b[f"payable:person:{bob_person}:EUR"] == first[bob] + second[bob]
    assert b[f"fund:{FUND}/name:{w.bob}:EUR"] == 0 and b[bob] == 0
    with store.read() as conn:
        assert published_unclaimed(conn, "Bob") == []
    conserved(store)


def test_an_expiry_is_final_and_never_goes_back_to_the_operator(
    world: tuple[World, dict[str, int], dict[str, int]],
) -> None:
    w, _, _ = world
    (event_id,) = expire_escrow(w.store, dt.date(2025, 2, 9)).transfers
    before = row_counts(w.store)
    with w.store.write() as conn, pytest.raises(LedgerError, match="it is final"):
        post_transfer(conn, reversal_of(load_transfer(conn, event_id), "undo-expiry", "mistake"))
    assert row_counts(w.store) == before
    assert not any(k.startswith("pool:") for k in load_transfer_legs(w.store, event_id))


def load_transfer_legs(store: Store, event_id: str) -> dict[str, int]:
    with store.read() as conn:
        return dict(load_transfer(conn, event_id).legs)


def test_without_a_fund_money_stays_in_escrow_and_is_reported(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(store)
    accrue_on(monkeypatch, w, "2025-01-10", "b1", terms(fund=None), {w.song: 1.0})
    held = {k: v for k, v in balances(store, kind="escrow").items() if v}
    before = row_counts(store)
    result = expire_escrow(store, dt.date(2025, 6, 1))
    assert result.transfers == () and result.moved == ()
    assert {(e.account, e.amount_microunits, e.fund) for e in result.held_without_fund} == {
        (k, v, None) for k, v in held.items()
    }
    assert row_counts(store) == before
    with store.read() as conn:
        (row,) = published_unclaimed(conn, "bob")
    assert (row.status, row.fund, row.due_on) == ("escrow", None, dt.date(2025, 2, 9))


def test_a_period_already_running_may_be_lengthened_never_shortened(
    world: tuple[World, dict[str, int], dict[str, int]],
) -> None:
    w, first, _ = world
    store = w.store
    before = row_counts(store)
    with store.write() as conn, pytest.raises(ConflictError, match="would shorten escrow_period_days from 30 to 10"):
        save_agreement_terms(conn, terms(period_days=10, version=2))
    assert row_counts(store) == before
    with store.write() as conn:
        assert save_agreement_terms(conn, terms(period_days=60, version=2)) == "created"
    assert expire_escrow(store, dt.date(2025, 2, 9)).moved == ()  # the old deadline no longer applies
    moved = expire_escrow(store, dt.date(2025, 3, 11)).moved
    assert {(e.account, e.amount_microunits) for e in moved} == set(first.items())
    conserved(store)


def test_an_as_of_date_in_the_future_is_refused(world: tuple[World, dict[str, int], dict[str, int]]) -> None:
    w, _, _ = world
    before, b = row_counts(w.store), balances(w.store)
    with pytest.raises(ValidationError, match="is after today"):
        expire_escrow(w.store, dt.date(2030, 1, 1), today=dt.date(2029, 12, 31))
    assert row_counts(w.store) == before and balances(w.store) == b


def test_a_work_released_after_expiry_takes_its_money_back_from_the_fund(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = World(store)
    ag = terms()
    accrue_on(monkeypatch, w, "2025-01-10", "b1", ag, {w.orphan: 1.0})
    held = balances(store)[f"escrow:work:{w.orphan}:EUR"]
    expire_escrow(store, dt.date(2025, 2, 9))
    assert balances(store)[f"fund:{FUND}/work:{w.orphan}:EUR"] == held
    with store.read() as conn:
        (row,) = published_unclaimed(conn, "nobody")
    assert (row.name, row.status, row.fund) == ("Nobody's (work, nobody credited yet)", "fund", FUND)
    with store.write() as conn:
        add_credits(conn, [CreditIn(w.orphan, f"person:{w.alice}", "endcredits:composer", 1)])
    released = release_work_escrow(store, w.orphan, ag)
    assert released.moved_microunits == {"EUR": held}
    assert balances(store)[f"fund:{FUND}/work:{w.orphan}:EUR"] == 0
    conserved(store)


def test_the_published_list_per_fund_is_names_and_amounts_only(
    world: tuple[World, dict[str, int], dict[str, int]],
) -> None:
    w, first, second = world
    expire_escrow(w.store, dt.date(2025, 2, 9))
    with w.store.read() as conn:
        rows = published_unclaimed(conn, fund=FUND)
        assert published_unclaimed(conn, fund="another-fund") == []
    text = unclaimed_csv(rows)
    header, *lines = text.splitlines()
    assert header == "name,currency,amount,amount_microunits,status,owed_since,due_on,fund,moved_on"
    assert len(lines) == 4  # Bob and Dan: each in the fund and still in escrow
    assert "name:" not in text and "person:" not in text and "DE" not in text and "FR" not in text
    assert sum(int(line.split(",")[3]) for line in lines) == sum(first.values()) + sum(second.values())
