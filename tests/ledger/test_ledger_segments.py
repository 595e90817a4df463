"""Accrual segments on both backends: an accrual writes one columnar row, every reader reads through the
pending segments, folding them changes no reader's answer, and verify re-adds them either way."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

import endcredits.ledger.folding as folding
from endcredits.errors import LedgerError
from endcredits.ledger import TransferRequest
from endcredits.ledger.accrue import accrue
from endcredits.ledger.escrow import claim_escrow, search_escrow
from endcredits.ledger.records import (
    account_balances,
    accrued_by_account,
    carried_fractions,
    fold_pending,
    post_transfer,
)
from endcredits.ledger.segments import LEGS_BIG_SCHEMA, fold_watermark, pending_size, read_segment, segment_ids
from endcredits.ledger.verify import verify
from endcredits.payouts.batches import create_payout_batch
from endcredits.payouts.files import Debtor
from endcredits.payouts.iban import make_test_iban
from endcredits.payouts.statements import build_statement
from endcredits.registry.records import verify_person
from endcredits.store.engine import Store
from endcredits.store.schema import ledger_folds, ledger_segments
from helpers_money import EXTERNAL, World, agreement, balances, on_time, people, register_model, row_counts, usage


def readers(store: Store, w: World) -> dict[str, Any]:
    """What every reader of balances and carries answers now."""
    with store.read() as conn:
        return {
            "balances": account_balances(conn),
            "escrow_bob": account_balances(conn, kind="escrow", holder=f"name:{w.bob}"),
            "escrow_bob_dan": account_balances(conn, kind="escrow", holders=[f"name:{w.bob}", f"person:{w.dan}"]),
            "nobody": account_balances(conn, holders=[]),
            "payable_eur": account_balances(conn, kind="payable", currency="EUR"),
            "carries": carried_fractions(conn),
            "escrow_search": search_escrow(conn),
            "accrued": accrued_by_account(conn),
            "accrued_jan": accrued_by_account(conn, currency="EUR", period="2026-01"),
            "statement": build_statement(store, w.alice, "2026-01", "EUR").to_json(),
        }


def fold(store: Store) -> Any:
    with store.write() as conn:
        return fold_pending(conn)


@pytest.fixture
def world(store: Store) -> World:
    return World(store)


def accrue_one(w: World, revenue: int, scores: dict[str, float], event_id: str = "b1") -> None:
    """One output of ``revenue`` in January, pool rate one half."""
    ag = agreement(pool_rate="0.5")
    accrue(
        w.store, w.usage([(f"{event_id}-o1", revenue, on_time(1), scores)], ag), ag, event_id=event_id, source=EXTERNAL
    )


def test_an_accrual_writes_one_segment_row_and_no_row_per_payee(world: World) -> None:
    accrue_one(world, 10**9, {world.song: 0.6, world.film: 0.3, world.orphan: 0.1})
    counts = row_counts(world.store)
    assert (counts["ledger_segments"], counts["transfers"], counts["accounts"], counts["legs"], counts["carries"]) == (
        1,
        1,
        0,
        0,
        0,
    )
    b = balances(world.store)  # read through the pending segment
    assert b["pool:EUR"] == -5 * 10**8 and sum(b.values()) == 0
    assert set(b) >= {
        f"payable:person:{world.alice}:EUR",
        f"escrow:name:{world.bob}:EUR",
        f"escrow:person:{world.dan}:EUR",
        f"escrow:work:{world.orphan}:EUR",
    }
    report = verify(world.store)
    assert report.ok, report.problems
    assert (report.checked["segments"], report.checked["segments_pending"]) == (1, 1)


def test_folding_changes_no_reader_and_verify_passes_on_either_side(world: World) -> None:
    store = world.store
    ag = agreement(pool_rate="0.3")
    accrue(
        store,
        world.usage(
            [
                ("o1", 10**9 + 7, on_time(1), {world.song: 0.5, world.film: 0.5}),
                ("o2", 333, on_time(1, 3), {world.song: 1.0}),
            ],
            ag,
        ),
        ag,
        event_id="b1",
        source=EXTERNAL,
    )
    accrue(
        store,
        world.usage(
            [
                ("o3", 777_777, on_time(1, 9), {world.song: 0.25, world.orphan: 0.75}),
                ("o4", 5, on_time(2), {world.film: 1.0}),
            ],
            ag,
        ),
        ag,
        event_id="b2",
        source=EXTERNAL,
    )
    pending = readers(store, world)
    assert set(pending["escrow_bob_dan"]) == {f"escrow:name:{world.bob}:EUR", f"escrow:person:{world.dan}:EUR"}
    assert (
        pending["escrow_bob_dan"][f"escrow:name:{world.bob}:EUR"]
        == pending["escrow_bob"][f"escrow:name:{world.bob}:EUR"]
    )
    assert pending["nobody"] == {}
    assert verify(store).ok
    with store.read() as conn:
        assert pending_size(conn)[0] == 3  # b1's January, b2's January and February
    result = fold(store)
    assert (result.segments, result.through_transfer_id) == (3, max(segment_ids_of(store)))
    assert readers(store, world) == pending
    report = verify(store)
    assert report.ok, report.problems
    assert report.checked["segments_pending"] == 0
    assert fold(store) is None  # nothing pending: no row, no audit entry
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(ledger_folds)).scalar_one() == 1
        assert fold_watermark(conn) == result.through_transfer_id
    # A segment on top of folded rows reads through the same way.
    accrue(
        store, world.usage([("o5", 10**8, on_time(1, 20), {world.song: 1.0})], ag), ag, event_id="b3", source=EXTERNAL
    )
    on_top = readers(store, world)
    assert verify(store).ok
    fold(store)
    assert readers(store, world) == on_top
    assert verify(store).ok


def segment_ids_of(store: Store) -> list[int]:
    with store.read() as conn:
        return segment_ids(conn)


def test_an_accrual_folds_first_when_enough_is_pending(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(folding, "FOLD_PENDING_SEGMENTS_MAX", 2)
    store = world.store
    ag = agreement(pool_rate="0.5")
    for i in range(5):
        accrue(
            store,
            world.usage([(f"o{i}", 10**6 + i, on_time(1, i + 1), {world.song: 1.0})], ag),
            ag,
            event_id=f"b{i}",
            source=EXTERNAL,
        )
    with store.read() as conn:
        folds = conn.execute(
            select(ledger_folds.c.through_transfer_id, ledger_folds.c.segment_count).order_by(ledger_folds.c.id)
        ).all()
        assert pending_size(conn)[0] == 1
    ids = segment_ids_of(store)
    assert [tuple(f) for f in folds] == [(ids[1], 2), (ids[3], 2)]  # the third and fifth batch folded two first
    assert verify(store).ok


def test_every_other_writer_folds_first(world: World) -> None:
    store = world.store
    accrue_one(world, 10**9, {world.film: 1.0})
    held = balances(store)[f"escrow:person:{world.dan}:EUR"]
    with store.write() as conn:
        verify_person(conn, world.dan, verified_by="test-guild")
    claimed = claim_escrow(store, world.dan)
    assert claimed.moved_microunits == {"EUR": held}
    with store.read() as conn:
        assert pending_size(conn) == (0, 0)
    b = balances(store)
    assert b[f"escrow:person:{world.dan}:EUR"] == 0 and b[f"payable:person:{world.dan}:EUR"] == held
    assert verify(store).ok


def test_a_payout_dry_run_reads_pending_balances_and_writes_nothing(world: World) -> None:
    store = world.store
    accrue_one(world, 10**11, {world.song: 1.0})
    owed = balances(store)[f"payable:person:{world.alice}:EUR"]
    before = row_counts(store)
    debtor = Debtor(name="Endcredits Residuals Trust", iban=make_test_iban("NL", 0), bic="ABNANL2A")
    plan = create_payout_batch(
        store,
        batch_id="p1",
        currency="EUR",
        threshold_microunits=10**8,
        debtor=debtor,
        execution_date=dt.date(2026, 2, 2),
        dry_run=True,
    )
    assert [(p.person_id, p.amount_microunits) for p in plan.items] == [(world.alice, owed - owed % 10**6)]
    assert row_counts(store) == before  # not even a fold
    real = create_payout_batch(
        store,
        batch_id="p1",
        currency="EUR",
        threshold_microunits=10**8,
        debtor=debtor,
        execution_date=dt.date(2026, 2, 2),
    )
    assert real.items == plan.items
    assert balances(store)[f"payable:person:{world.alice}:EUR"] == owed % 10**6
    assert verify(store).ok


def test_segment_legs_beyond_int64_are_exact(store: Store) -> None:
    (a,) = people(store, "a")
    register_model(store)
    big = (1 << 62) - 1
    accrue(
        store,
        usage([(f"o{i}", big, on_time(1), [(f"person:{a}", 1)]) for i in range(4)]),
        agreement(pool_rate="1"),
        event_id="b1",
        source=EXTERNAL,
    )
    with store.read() as conn:
        seg = read_segment(conn, segment_ids(conn)[0])
    assert seg.amounts.type == LEGS_BIG_SCHEMA.field("amount_microunits").type
    assert seg.legs() == {f"payable:person:{a}:EUR": 4 * big, "pool:EUR": -4 * big}
    assert balances(store)[f"payable:person:{a}:EUR"] == 4 * big > (1 << 63)
    fold(store)
    assert balances(store)[f"payable:person:{a}:EUR"] == 4 * big
    assert verify(store).ok


def test_an_unreadable_segment_is_named(world: World) -> None:
    store = world.store
    accrue_one(world, 10**9, {world.song: 1.0})
    (tid,) = segment_ids_of(store)
    with store.write() as conn:
        blob = conn.execute(select(ledger_segments.c.legs_arrow)).scalar_one()
        conn.execute(ledger_segments.update().values(legs_arrow=bytes(blob)[: len(blob) // 2]))
    with store.read() as conn, pytest.raises(LedgerError, match=f"segment of transfer {tid}: its legs are unreadable"):
        account_balances(conn)
    report = verify(store)
    assert not report.ok
    assert any(f"segment of transfer {tid}: its legs are unreadable" in p for p in report.problems), report.problems


payee_lines = st.lists(
    st.tuples(st.integers(0, 5), st.integers(1, 1000)), min_size=1, max_size=4, unique_by=lambda t: t[0]
)
batch = st.lists(st.tuples(st.integers(0, 10**7), st.integers(1, 3), payee_lines), min_size=1, max_size=4)


def _move_half(s: Store, event_id: str, key: str, to: str) -> None:
    """A writer that needs the accounts' rows (opened from the snapshot when they have none): half of one
    payee's balance moves to another."""
    with s.write() as conn:
        half = account_balances(conn, kind="payable", holder=key.split(":", 1)[1].rsplit(":", 1)[0]).get(key, 0) // 2
        if half:
            post_transfer(conn, TransferRequest(event_id, "escrow_claim", "EUR", {key: -half, to: half}))


def test_random_accruals_read_the_same_whenever_they_are_folded(store: Store, store_factory) -> None:  # type: ignore[no-untyped-def]
    """One store folds after the batches hypothesis picks, its replica never (but for the transfers that
    open rows, which fold first on both): after every batch both answer the same balances, carries,
    accruals and transfers, and both verify."""
    replica = store_factory()
    handles = [f"p{i}" for i in range(6)]
    ids = people(store, *handles)
    assert people(replica, *handles) == ids
    for s in (store, replica):
        register_model(s)
    ag = agreement(pool_rate="0.37")
    examples = itertools.count()

    @settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(batch, st.booleans()), min_size=1, max_size=4), st.none() | st.integers(0, 5))
    def check(steps: list[tuple[list[tuple[int, int, list[tuple[int, int]]]], bool]], pay: int | None) -> None:
        n = next(examples)
        for i, (outputs, fold_after) in enumerate(steps):
            u = usage(
                [
                    (f"x{n}-{i}-{j}", revenue, on_time(month), [(f"person:{ids[p]}", w) for p, w in lines])
                    for j, (revenue, month, lines) in enumerate(outputs)
                ]
            )
            for s in (store, replica):
                accrue(s, u, ag, event_id=f"x{n}-{i}", source=EXTERNAL)
            if fold_after:
                fold(store)
            if pay is not None and i == 0:  # a transfer between two payees: the writer opens their rows
                for s in (store, replica):
                    _move_half(s, f"move{n}", f"payable:person:{ids[pay]}:EUR", f"payable:person:{ids[5 - pay]}:EUR")
            with store.read() as a, replica.read() as b:
                assert account_balances(a) == account_balances(b)
                assert carried_fractions(a) == carried_fractions(b)
                assert accrued_by_account(a) == accrued_by_account(b)
                assert search_escrow(a) == search_escrow(b)

    check()
    for s in (store, replica):
        report = verify(s)
        assert report.ok, report.problems
