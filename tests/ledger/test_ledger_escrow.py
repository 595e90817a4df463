"""Escrow: money for an unclaimed name or an unverified person waits under its own name, is found by
search, and moves to the person only when a verified person claims it — once."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from endcredits.errors import ConflictError, ConsentError
from endcredits.ledger.accrue import accrue
from endcredits.ledger.escrow import EscrowHolding, claim_escrow, search_escrow
from endcredits.ledger.records import load_transfer
from endcredits.ledger.verify import verify
from endcredits.registry.records import claim_name, verify_person
from endcredits.store.audit import iter_audit
from endcredits.store.engine import Store
from endcredits.store.schema import names
from helpers_money import EXTERNAL, World, agreement, balances, on_time, people, row_counts


@pytest.fixture
def world(store: Store) -> World:
    w = World(store)
    ag = agreement(pool_rate="0.5")
    accrue(
        store,
        w.usage(
            [
                ("o1", 10**9, on_time(1), {w.song: 0.6, w.film: 0.4}),
                ("o2", 3 * 10**8 + 7, on_time(1, 2), {w.song: 1.0}),
            ],
            ag,
        ),
        ag,
        event_id="b1",
        source=EXTERNAL,
    )
    return w


def test_money_waits_in_escrow_under_its_own_name_and_is_searchable(world: World) -> None:
    b = balances(world.store)
    name_key, dan_key = f"escrow:name:{world.bob}:EUR", f"escrow:person:{world.dan}:EUR"
    assert b[name_key] > 0 and b[dan_key] > 0
    assert not any(k.startswith("payable:") and k != f"payable:person:{world.alice}:EUR" for k in b)
    with world.store.read() as conn:
        found = search_escrow(conn, "bob")
        assert found == [EscrowHolding(f"name:{world.bob}", "Bob Credited", "EUR", b[name_key])]
        assert search_escrow(conn, "BOB CRED") == found
        assert search_escrow(conn, "nobody like that") == []
        everything = search_escrow(conn)
    assert {(h.holder, h.display_name) for h in everything} == {
        (f"name:{world.bob}", "Bob Credited"),
        (f"person:{world.dan}", "dan"),
    }
    assert [h.balance_microunits for h in everything] == sorted((b[name_key], b[dan_key]), reverse=True)


def test_only_a_verified_person_can_claim_and_a_person_verified_later_can(world: World) -> None:
    store = world.store
    (impostor,) = people(store, "impostor", verified=False)
    before, balances_before = row_counts(store), balances(store)
    with pytest.raises(
        ConsentError, match=f"person {impostor} is not verified; escrow is released only to verified people"
    ):
        claim_escrow(store, impostor, name_id=world.bob)
    with pytest.raises(ConsentError, match=f"person {world.dan} is not verified"):
        claim_escrow(store, world.dan)
    assert row_counts(store) == before and balances(store) == balances_before
    with store.read() as conn:  # the name claim was rolled back with the refused release
        assert conn.execute(select(names.c.person_id).where(names.c.id == world.bob)).scalar_one() is None
    # Once verified, a person receives what waited for them, once.
    held = balances_before[f"escrow:person:{world.dan}:EUR"]
    with store.write() as conn:
        verify_person(conn, world.dan, verified_by="actors-guild")
    assert claim_escrow(store, world.dan).moved_microunits == {"EUR": held}
    b = balances(store)
    assert (b[f"escrow:person:{world.dan}:EUR"], b[f"payable:person:{world.dan}:EUR"]) == (0, held)
    assert claim_escrow(store, world.dan).moved_microunits == {}
    assert verify(store).ok


def test_claiming_a_name_moves_its_escrow_once_with_an_audited_transfer(world: World) -> None:
    store = world.store
    (bob_person,) = people(store, "bob-the-performer")
    held = balances(store)[f"escrow:name:{world.bob}:EUR"]
    with store.write() as conn:
        claim_name(conn, world.bob, bob_person)
    result = claim_escrow(store, bob_person)
    assert result.moved_microunits == {"EUR": held}
    (event_id,) = result.transfers
    b = balances(store)
    assert b[f"escrow:name:{world.bob}:EUR"] == 0
    assert b[f"payable:person:{bob_person}:EUR"] == held
    with store.read() as conn:
        transfer = load_transfer(conn, event_id)
        audited = [e for e in iter_audit(conn) if e.subject == event_id]
        claims = [e for e in iter_audit(conn, kind="name.claimed")]
    assert transfer.code == "escrow_claim"
    assert dict(transfer.legs) == {f"escrow:name:{world.bob}:EUR": -held, f"payable:person:{bob_person}:EUR": held}
    assert len(audited) == 1 and json.loads(audited[0].payload)["code"] == "escrow_claim"
    assert [(e.subject, json.loads(e.payload)) for e in claims] == [(f"name:{world.bob}", {"person": bob_person})]
    # Claiming again moves nothing and writes nothing.
    before = row_counts(store)
    again = claim_escrow(store, bob_person, name_id=world.bob)
    assert (again.moved_microunits, again.transfers) == ({}, ())
    assert row_counts(store) == before
    # Nobody else can take the name now, and new residuals for it go straight to its person.
    (other,) = people(store, "someone-else")
    with pytest.raises(
        ConflictError, match=f"name {world.bob} \\(Bob Credited\\) is already claimed by person {bob_person}"
    ):
        claim_escrow(store, other, name_id=world.bob)
    ag = agreement(pool_rate="0.5")
    accrue(
        store, world.usage([("o3", 4 * 10**8, on_time(2), {world.song: 1.0})], ag), ag, event_id="b2", source=EXTERNAL
    )
    assert balances(store)[f"escrow:name:{world.bob}:EUR"] == 0
    assert balances(store)[f"payable:person:{bob_person}:EUR"] > held
    report = verify(store)
    assert report.ok, report.problems


def test_money_held_for_a_work_nobody_was_credited_on_is_released_once_someone_is(store: Store) -> None:
    from endcredits.ledger.escrow import release_work_escrow
    from endcredits.registry.records import CreditIn, add_credits

    w = World(store)
    ag = agreement(pool_rate="0.5")
    accrue(store, w.usage([("o1", 10**9 + 1, on_time(1), {w.orphan: 1.0})], ag), ag, event_id="b1", source=EXTERNAL)
    held = balances(store)[f"escrow:work:{w.orphan}:EUR"]
    assert held > 0
    with pytest.raises(ConsentError, match="credits nobody"):
        release_work_escrow(store, w.orphan, ag)
    # Alice (verified) and Bob's unclaimed name are credited later, 1:2.
    with store.write() as conn:
        add_credits(
            conn,
            [
                CreditIn(w.orphan, f"person:{w.alice}", "endcredits:composer", 1),
                CreditIn(w.orphan, f"name:{w.bob}", "endcredits:composer", 2),
            ],
        )
    before = balances(store)
    released = release_work_escrow(store, w.orphan, ag)
    after = balances(store)
    assert released.moved_microunits == {"EUR": held}
    assert after.get(f"escrow:work:{w.orphan}:EUR", 0) == 0
    gained_alice = after[f"payable:person:{w.alice}:EUR"] - before.get(f"payable:person:{w.alice}:EUR", 0)
    gained_bob = after[f"escrow:name:{w.bob}:EUR"] - before.get(f"escrow:name:{w.bob}:EUR", 0)
    assert gained_alice + gained_bob == held
    assert abs(gained_alice * 3 - held) < 3 and abs(gained_bob * 3 - 2 * held) < 3  # each within a microunit
    assert release_work_escrow(store, w.orphan, ag).moved_microunits == {}  # nothing twice
    assert verify(store).ok
