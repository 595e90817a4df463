"""Folding is exact: on random segments (amounts up to 10^26, many beyond int64, folded at random points,
with claims that open account rows from the snapshot) the account rows and the snapshot after a fold hold
each balance once and equal a plain Python sum of every leg and the latest carry of every payee, to the
microunit, on both backends; ``fold_now`` folds what is pending; an overdrawn fold
writes nothing."""

from __future__ import annotations

import random

import numpy as np
import pytest
from sqlalchemy import select

from endcredits.errors import LedgerError, ValidationError
from endcredits.ledger import TransferRequest
from endcredits.ledger.folding import fold_due, fold_now
from endcredits.ledger.records import (
    account_balances,
    add_exact,
    derived_balances,
    fold_pending,
    post_accrual,
    post_transfer,
)
from endcredits.ledger.segments import pending_size
from endcredits.ledger.snapshot import read_snapshot
from endcredits.store.engine import Store
from endcredits.store.schema import accounts, carries, ledger_folds


def _segment(rng: random.Random, n: int, holders: int, big: bool) -> tuple[dict[str, int], list[str], list[int]]:
    """Random legs over ``holders`` names (some pairs sharing an account), the pool debited, and carries."""
    legs: dict[str, int] = {}
    for _ in range(n):
        key = f"escrow:name:{rng.randrange(holders)}:EUR"
        top = 10**26 if big and rng.random() < 0.2 else (1 << 61) if rng.random() < 0.1 else 10**9
        legs[key] = legs.get(key, 0) + rng.randrange(1, top)
    legs["pool:EUR"] = -sum(legs.values())
    payees = sorted({f"name:{rng.randrange(holders)}" for _ in range(n)})
    return legs, payees, [rng.randrange(1 << 32) for _ in payees]


def _claim(rng: random.Random, expected: dict[str, int], n: int) -> dict[str, int] | None:
    """Legs of a transfer moving part of a random escrow balance to a person: the writer opens the rows."""
    held = sorted(k for k, v in expected.items() if k.startswith("escrow:") and v > 0)
    if not held:
        return None
    key = rng.choice(held)
    amount = rng.randrange(1, expected[key] + 1)
    return {key: -amount, f"payable:person:{n % 3}:EUR": amount}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_folded_balances_equal_a_plain_sum_of_every_leg(store: Store, seed: int) -> None:
    """Accruals, folds and claims (which open account rows from the snapshot) at random points: the rows
    and the snapshot hold every balance once, and equal a plain sum of every leg."""
    rng = random.Random(seed)
    expected: dict[str, int] = {}
    latest: dict[str, int] = {}
    opened: set[str] = set()
    for i in range(12):
        legs, payees, subunits = _segment(rng, rng.randrange(1, 60), 40, big=seed == 3)
        with store.write() as conn:
            post_accrual(
                conn,
                TransferRequest(event_id=f"s{seed}-{i}", code="accrual", currency="EUR", legs=legs),
                (payees, np.array(subunits, dtype=np.int64)),
            )
            if rng.random() < 0.3:
                fold_pending(conn)
        for key, amount in legs.items():
            expected[key] = expected.get(key, 0) + amount
        latest.update(zip(payees, subunits))
        claim = _claim(rng, expected, i) if rng.random() < 0.3 else None
        if claim is not None:
            with store.write() as conn:
                post_transfer(conn, TransferRequest(f"c{seed}-{i}", "escrow_claim", "EUR", claim))
            for key, amount in claim.items():
                expected[key] = expected.get(key, 0) + amount
            opened |= set(claim)
        with store.read() as conn:
            assert account_balances(conn) == expected
    fold_now(store)  # whatever the last random folds left pending
    with store.read() as conn:
        rows = {r.key: int(r.balance_microunits) for r in conn.execute(select(accounts))}
        snap = read_snapshot(conn, carries=True)
        held = dict(zip(snap.keys.to_pylist(), snap.balances.tolist()))
        carried = {r.payee: int(r.subunits) for r in conn.execute(select(carries))}
        carried.update(zip(snap.carry_payees.to_pylist(), snap.carry_subunits.tolist()))
        assert pending_size(conn) == (0, 0) and not fold_due(conn)
        assert derived_balances(conn) == expected  # what verify re-adds from the segments
        assert account_balances(conn) == expected
    assert not set(rows) & set(held), "an account is both a row and in the snapshot"
    assert rows | held == expected
    assert {k for k in rows if k.startswith(("escrow:", "payable:"))} == opened  # only writers open rows
    assert carried == latest
    assert fold_now(store) is None


def test_add_exact_leaves_int64_only_when_it_cannot_overflow() -> None:
    a = np.array([1, -5, (1 << 61)], dtype=np.int64)
    assert add_exact(a, a).dtype == np.int64 and add_exact(a, a).tolist() == [2, -10, 1 << 62]
    b = np.array([(1 << 62), 0, 1], dtype=np.int64)
    assert add_exact(b, b).dtype == object and add_exact(b, b).tolist() == [1 << 63, 0, 2]
    c = np.array([10**30], dtype=object)
    assert add_exact(c, np.array([1], dtype=np.int64)).tolist() == [10**30 + 1]


def _post(store: Store, event_id: str, legs: dict[str, int]) -> None:
    with store.write() as conn:
        post_accrual(
            conn,
            TransferRequest(event_id=event_id, code="accrual", currency="EUR", legs=legs),
            ([], np.zeros(0, dtype=np.int64)),
        )


def test_a_fold_that_would_overdraw_writes_nothing(store: Store) -> None:
    _post(store, "a", {"suspense:EUR": 5, "pool:EUR": -5})
    assert fold_now(store) is not None
    _post(store, "b", {"suspense:EUR": -3, "pool:EUR": 3})
    with store.write() as conn:  # a stored balance changed behind the ledger's back: 1 left, 3 to take
        conn.execute(accounts.update().where(accounts.c.key == "suspense:EUR").values(balance_microunits=1))
    with pytest.raises(LedgerError, match="would leave account suspense:EUR at -2; nothing was folded"):
        fold_now(store)
    with store.read() as conn:
        assert len(conn.execute(select(ledger_folds)).all()) == 1
        assert pending_size(conn)[0] == 1
        assert {r.key: int(r.balance_microunits) for r in conn.execute(select(accounts))} == {
            "suspense:EUR": 1,
            "pool:EUR": -5,
        }


def test_a_fold_splits_account_keys_as_parse_account_key_does() -> None:
    from endcredits.ledger import parse_account_key
    from endcredits.ledger.records import _key_parts

    keys = ["escrow:name:12:EUR", "pool:EUR", "payable:person:3:USD", "escrow:work:a:b:EUR", "escrow::EUR"]
    kinds, currencies, holders = _key_parts(keys)
    assert [parse_account_key(k) for k in keys] == list(zip(kinds, holders, currencies))
    assert _key_parts([]) == ([], [], [])
    for bad in ["bogus:x:EUR", "escrowEUR", "pool:EURO", "pool:E:R"]:
        with pytest.raises(ValidationError):
            _key_parts(["pool:EUR", bad])


def test_rows_an_earlier_fold_wrote_are_read_and_the_snapshot_overrides_their_carries(store: Store) -> None:
    """A store folded before the snapshot existed has account and carry rows for its payees: they stay rows
    (updated by later folds) and a later carry in the snapshot wins over the carry row."""
    from endcredits.ledger.records import _open_accounts, carried_fractions, read_carries

    with store.write() as conn:
        post_accrual(
            conn,
            TransferRequest(
                event_id="s1", code="accrual", currency="EUR", legs={"escrow:name:1:EUR": 10, "pool:EUR": -10}
            ),
            (["name:1"], np.array([5], dtype=np.int64)),
        )
        # What a fold wrote before migration 0014: an account row per account and a carry row per payee.
        _open_accounts(conn, ["escrow:name:1:EUR", "pool:EUR"], [10, -10], [1, 1], "2026-01-01T00:00:00Z")
        conn.execute(carries.insert().values(payee="name:1", currency="EUR", subunits=5))
        conn.execute(
            ledger_folds.insert().values(
                through_transfer_id=1, segment_count=1, account_count=2, carry_count=1, folded_at="2026-01-01T00:00:00Z"
            )
        )
    with store.read() as conn:
        assert read_carries(conn, "EUR", ["name:1", "name:2"]).tolist() == [5, 0]
    with store.write() as conn:
        legs = {"escrow:name:1:EUR": 3, "escrow:name:2:EUR": 4, "pool:EUR": -7}
        post_accrual(
            conn,
            TransferRequest(event_id="s2", code="accrual", currency="EUR", legs=legs),
            (["name:1", "name:2"], np.array([6, 7], dtype=np.int64)),
        )
        fold_pending(conn)
    with store.read() as conn:
        rows = {r.key: int(r.balance_microunits) for r in conn.execute(select(accounts))}
        assert rows == {"escrow:name:1:EUR": 13, "pool:EUR": -17}  # name:2 has no row: it is in the snapshot
        assert read_snapshot(conn).keys.to_pylist() == ["escrow:name:2:EUR"]
        assert account_balances(conn) == {"escrow:name:1:EUR": 13, "escrow:name:2:EUR": 4, "pool:EUR": -17}
        assert account_balances(conn) == derived_balances(conn)
        assert read_carries(conn, "EUR", ["name:2", "name:1", "name:3"]).tolist() == [7, 6, 0]
        assert carried_fractions(conn) == {("name:1", "EUR"): 6, ("name:2", "EUR"): 7}


def test_verify_finds_an_account_counted_both_as_a_row_and_in_the_snapshot(store: Store) -> None:
    from endcredits.ledger.verify import verify
    from endcredits.store.schema import ledger_snapshots

    legs = {"escrow:name:1:EUR": 10, "escrow:name:2:EUR": 5, "pool:EUR": -15}
    with store.write() as conn:
        post_accrual(
            conn,
            TransferRequest(event_id="s1", code="accrual", currency="EUR", legs=legs),
            ([], np.zeros(0, dtype=np.int64)),
        )
    assert fold_now(store) is not None
    with store.write() as conn:  # a writer opens the two rows from the snapshot
        post_transfer(
            conn, TransferRequest("c1", "escrow_claim", "EUR", {"escrow:name:1:EUR": -4, "escrow:name:2:EUR": 4})
        )
    with store.read() as conn:
        assert account_balances(conn) == {"escrow:name:1:EUR": 6, "escrow:name:2:EUR": 9, "pool:EUR": -15}
        assert read_snapshot(conn).keys.to_pylist() == []  # both opened since: the rows hold them
        assert len(read_snapshot(conn, live=False).keys) == 2
    report = verify(store)
    assert report.ok, report.problems
    with store.write() as conn:  # as if the rows had been there when the snapshot was written
        conn.execute(ledger_snapshots.update().values(account_id_max=10**6))
    problems = verify(store).problems
    assert any("accounts counted twice, as a row and in the ledger snapshot" in p for p in problems), problems
