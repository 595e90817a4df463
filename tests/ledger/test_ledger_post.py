"""Ledger transfers on both backends: balanced, append-only, idempotent by event id, never overdrawn,
replayable byte for byte, and exact beyond int64."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

import endcredits.ledger as ledger_rules
import endcredits.ledger.records as store_ledger
from endcredits.errors import ConflictError, LedgerError, LimitExceededError, NotFoundError, ValidationError
from endcredits.ledger import TransferRequest, reversal_of
from endcredits.ledger.records import load_transfer, post_transfer, transfer_count
from endcredits.ledger.verify import verify
from endcredits.limits import AMOUNT_MICROUNITS_MAX
from endcredits.store.engine import Store
from helpers_money import balances, derived_by_key, row_counts

AT = "2026-01-01T00:00:00.000000Z"
POOL = "pool:EUR"
ALICE = "payable:person:1:EUR"
BOB = "payable:person:2:EUR"
NAME = "escrow:name:3:EUR"
WORK = "escrow:work:w1:EUR"
BANK = "bank:payouts:EUR"


def post(store: Store, req: TransferRequest) -> str:
    with store.write() as conn:
        return post_transfer(conn, req, at=AT).status


def load_transfer_now(store: Store, event_id: str) -> TransferRequest:
    with store.read() as conn:
        return load_transfer(conn, event_id)


def fund(store: Store, event_id: str, account: str, amount: int) -> None:
    assert post(store, TransferRequest(event_id, "accrual", "EUR", {POOL: -amount, account: amount})) == "created"


# Balanced ----------------------------------------------------------------------------------------
BAD_TRANSFERS = [
    (TransferRequest("bad-1", "accrual", "EUR", {POOL: -10, ALICE: 11}), "does not balance: legs sum to 1"),
    (TransferRequest("bad-2", "accrual", "EUR", {POOL: -10, ALICE: 9}), "does not balance: legs sum to -1"),
    (TransferRequest("bad-3", "accrual", "EUR", {ALICE: 0, POOL: 0}), "is zero; leave it out"),
    (TransferRequest("bad-4", "accrual", "EUR", {POOL: 5}), "needs at least two legs"),
    (TransferRequest("bad-5", "accrual", "EUR", {POOL: -5, "payable:person:1:USD": 5}), "is not in EUR"),
]


def test_unbalanced_or_malformed_transfers_are_refused_and_write_nothing(store: Store) -> None:
    fund(store, "seed", ALICE, 100)
    before, balances_before = row_counts(store), balances(store)
    for req, message in BAD_TRANSFERS:
        with pytest.raises(LedgerError, match=re.escape(message)):
            post(store, req)
    assert row_counts(store) == before
    assert balances(store) == balances_before
    assert verify(store).ok


# Append-only ---------------------------------------------------------------------------------------
def test_the_ledger_offers_no_way_to_change_or_delete_a_transfer() -> None:
    """The only writes are posting and reversing: no function edits, deletes or amends a transfer."""
    editing = re.compile(r"(update|delete|remove|edit|amend|modify|replace|drop|truncate)", re.IGNORECASE)
    public = [
        n
        for m in (ledger_rules, store_ledger)
        for n in dir(m)
        if not n.startswith("_") and callable(getattr(m, n)) and getattr(getattr(m, n), "__module__", "") == m.__name__
    ]
    assert "post_transfer" in public
    assert [n for n in public if editing.search(n)] == []


def test_a_correction_is_a_reversing_transfer_and_only_one(store: Store) -> None:
    fund(store, "seed", NAME, 700)
    fund(store, "t2", BOB, 50)
    # The mistake: a name's escrow released to the wrong person.
    assert post(store, TransferRequest("t1", "escrow_claim", "EUR", {NAME: -700, ALICE: 700})) == "created"
    with store.read() as conn:
        original = load_transfer(conn, "t1")
    assert dict(original.legs) == {NAME: -700, ALICE: 700}
    undo = reversal_of(original, "t1-undo", "released to the wrong person")
    assert undo.code == "reversal" and undo.reverses_event_id == "t1" and dict(undo.legs) == {NAME: 700, ALICE: -700}
    assert post(store, undo) == "created"
    assert balances(store) == {POOL: -750, NAME: 700, ALICE: 0, BOB: 50}
    # Both the mistake and its correction stay in the ledger.
    with store.read() as conn:
        assert transfer_count(conn) == 4
        assert dict(load_transfer(conn, "t1").legs) == {NAME: -700, ALICE: 700}
        assert load_transfer(conn, "t1-undo").reverses_event_id == "t1"
    # Replaying the same reversal is a no-op; a second, different reversal is refused.
    assert post(store, undo) == "exists"
    assert post(store, TransferRequest("t3", "escrow_claim", "EUR", {NAME: -100, BOB: 100})) == "created"
    before = row_counts(store)
    with pytest.raises(ConflictError, match="transfer t1 was already reversed by t1-undo"):
        post(store, reversal_of(original, "t1-undo-again", "oops"))
    for bad, error, message in (
        (
            TransferRequest("r-half", "reversal", "EUR", {NAME: 50, BOB: -50}, reverses_event_id="t3"),
            LedgerError,
            "transfer r-half does not negate every leg of t3",
        ),
        (
            reversal_of(load_transfer_now(store, "t2"), "undo-t2", "accruals are not undone leg by leg"),
            LedgerError,
            "transfer t2 is an accrual batch",
        ),
        (reversal_of(undo, "undo-undo", "changed my mind"), LedgerError, "transfer t1-undo is itself a reversal"),
        (
            TransferRequest("r-code", "escrow_claim", "EUR", {NAME: 100, BOB: -100}, reverses_event_id="t3"),
            ValidationError,
            "code 'reversal' goes with reverses_event_id, and only with it",
        ),
    ):
        with pytest.raises(error, match=re.escape(message)):
            post(store, bad)
    with pytest.raises(NotFoundError, match="transfer nope to reverse does not exist"):
        post(store, TransferRequest("r-nope", "reversal", "EUR", {NAME: 1, ALICE: -1}, reverses_event_id="nope"))
    assert row_counts(store) == before
    assert verify(store).ok


def test_raw_edits_of_legs_are_caught_by_verify(store: Store) -> None:
    """Append-only is also checked after the fact: a leg edited behind the ledger's back is reported."""
    fund(store, "t1", ALICE, 700)
    with store.write() as conn:
        conn.execute(
            text("UPDATE legs SET amount_microunits = :v WHERE amount_microunits = :old"),
            {"v": "701" if store.backend == "sqlite" else 701, "old": "700" if store.backend == "sqlite" else 700},
        )
    problems = verify(store).problems
    assert "transfer t1 does not balance (legs sum to 1)" in problems
    assert f"account {ALICE}: stored balance 700 != sum of legs 701" in problems


# Idempotency -------------------------------------------------------------------------------------
def test_same_event_id_posts_once_and_other_content_conflicts(store: Store) -> None:
    req = TransferRequest("ev-1", "accrual", "EUR", {POOL: -42, ALICE: 42}, memo={"batch": "b"})
    assert post(store, req) == "created"
    before = row_counts(store)
    # The same content, legs given in another order: the same transfer.
    same = TransferRequest("ev-1", "accrual", "EUR", {ALICE: 42, POOL: -42}, memo={"batch": "b"})
    with store.write() as conn:
        result = post_transfer(conn, same, at=AT)
    assert result.status == "exists" and result.event_id == "ev-1"
    assert row_counts(store) == before
    for other in (
        TransferRequest("ev-1", "accrual", "EUR", {POOL: -43, ALICE: 43}, memo={"batch": "b"}),
        TransferRequest("ev-1", "accrual", "EUR", {POOL: -42, BOB: 42}, memo={"batch": "b"}),
        TransferRequest("ev-1", "accrual", "EUR", {POOL: -42, ALICE: 42}, memo={"batch": "c"}),
    ):
        with pytest.raises(ConflictError, match="event id ev-1 was already posted with other content"):
            post(store, other)
    assert row_counts(store) == before
    assert balances(store) == {POOL: -42, ALICE: 42}


# Overdraft ---------------------------------------------------------------------------------------
def test_overdrawing_a_payable_account_is_refused_and_changes_nothing(store: Store) -> None:
    fund(store, "t1", ALICE, 10)
    before, balances_before = row_counts(store), balances(store)
    with pytest.raises(LedgerError, match=f"would overdraw account {ALICE} \\(balance 10, leg -11\\)"):
        post(store, TransferRequest("pay-1", "payout_sent", "EUR", {ALICE: -11, BANK: 11}))
    with pytest.raises(LedgerError, match=f"would overdraw account {BOB} \\(balance 0, leg -1\\)"):
        post(store, TransferRequest("pay-2", "payout_sent", "EUR", {BOB: -1, BANK: 1}))
    assert row_counts(store) == before
    assert balances(store) == balances_before
    # Exactly the balance is fine, and the refused id is free to use.
    assert post(store, TransferRequest("pay-1", "payout_sent", "EUR", {ALICE: -10, BANK: 10})) == "created"
    assert balances(store)[ALICE] == 0
    assert verify(store).ok


# Property: random sequences --------------------------------------------------------------------------
ACCOUNTS = (POOL, ALICE, BOB, NAME, WORK, BANK)  # not suspense: verify ties it to carried fractions
AMOUNT = st.one_of(st.integers(1, 10**6), st.integers(1, 10**15), st.sampled_from([2**63 - 1, 2**63, 10**25]))


@st.composite
def transfer_legs(draw: st.DrawFn) -> dict[str, int]:
    """2..4 legs summing to zero; the first leg balances the rest and is mostly the pool (which may go negative)."""
    chosen = draw(st.lists(st.sampled_from(ACCOUNTS), min_size=2, max_size=4, unique=True))
    if draw(st.booleans()) and POOL not in chosen:
        chosen[0] = POOL
    amounts = [draw(AMOUNT) * draw(st.sampled_from([1, 1, 1, -1])) for _ in chosen[1:]]
    if sum(amounts) == 0:
        amounts[0] += 1
    return dict(zip(chosen, [-sum(amounts), *amounts]))


def snapshot(store: Store) -> list[tuple[object, ...]]:
    """Every ledger row as the database returns it, in key order: equal snapshots are equal bytes."""
    queries = [
        "SELECT id, key, kind, currency, holder, may_go_negative, created_at FROM accounts ORDER BY id",
        (
            "SELECT id, event_id, code, currency, content_sha256, reverses_event_id, memo, leg_count, created_at "
            "FROM transfers ORDER BY id"
        ),
        "SELECT transfer_id, account_id, CAST(amount_microunits AS TEXT) FROM legs ORDER BY transfer_id, account_id",
        "SELECT id, key, CAST(balance_microunits AS TEXT), last_transfer_id FROM accounts ORDER BY id",
        "SELECT seq, at, kind, subject, payload, prev_sha256, sha256 FROM audit_log ORDER BY seq",
    ]
    with store.read() as conn:
        return [tuple(r) for q in queries for r in conn.execute(text(q))]


def post_all(store: Store, requests: list[TransferRequest]) -> list[str]:
    statuses = []
    for req in requests:
        try:
            statuses.append(post(store, req))
        except LedgerError as exc:
            assert "would overdraw" in str(exc)
            statuses.append("refused")
    return statuses


def test_random_transfer_sequences_balance_and_replay_byte_for_byte(store: Store, store_factory) -> None:  # type: ignore[no-untyped-def]
    replica = store_factory()
    examples = itertools.count()

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(transfer_legs(), min_size=1, max_size=5))
    def check(legs_list: list[dict[str, int]]) -> None:
        n = next(examples)
        requests = [TransferRequest(f"ex{n}-t{i}", "accrual", "EUR", legs) for i, legs in enumerate(legs_list)]
        before = balances(store)
        first = post_all(store, requests)
        assert post_all(replica, requests) == first
        # Posting the accepted ones again (same ids) changes nothing, on either store.
        accepted = [req for req, s in zip(requests, first) if s == "created"]
        assert post_all(store, accepted) == ["exists"] * len(accepted)
        assert post_all(replica, accepted) == ["exists"] * len(accepted)
        # The expected balances, computed here from the transfers that were accepted.
        expected = dict(before)
        for req, status in zip(requests, first):
            if status == "created":
                for key, amount in req.legs.items():
                    expected[key] = expected.get(key, 0) + amount
        now = balances(store)
        assert now == expected
        assert sum(now.values()) == 0  # Σ debits == Σ credits
        assert all(v >= 0 for k, v in now.items() if k != POOL)
        assert derived_by_key(store) == now
        assert snapshot(replica) == snapshot(store)

    check()
    report = verify(store)
    assert report.ok, report.problems
    assert verify(replica).ok


# Beyond int64 --------------------------------------------------------------------------------------
def test_amounts_beyond_int64_round_trip(store: Store) -> None:
    amounts = {f"payable:person:{i}:EUR": a for i, a in enumerate((2**63 - 1, 2**63, 10**25, AMOUNT_MICROUNITS_MAX), 1)}
    for i, (account, amount) in enumerate(amounts.items()):
        fund(store, f"big-{i}", account, amount)
    fund(store, "again", "payable:person:1:EUR", 2**63 - 1)  # balances are summed beyond int64 too
    expected = {**amounts, "payable:person:1:EUR": 2**64 - 2, POOL: -(sum(amounts.values()) + 2**63 - 1)}
    assert balances(store) == expected
    assert derived_by_key(store) == expected
    with store.read() as conn:
        for i, (account, amount) in enumerate(amounts.items()):
            assert dict(load_transfer(conn, f"big-{i}").legs) == {POOL: -amount, account: amount}
        raw = set(conn.execute(text("SELECT CAST(amount_microunits AS TEXT) FROM legs")).scalars())
        stored = set(conn.execute(text("SELECT CAST(balance_microunits AS TEXT) FROM accounts")).scalars())
    assert {str(a) for a in amounts.values()} | {str(-a) for a in amounts.values()} <= raw
    assert str(expected[POOL]) in stored and str(2**64 - 2) in stored
    assert verify(store).ok


def test_amounts_beyond_the_stored_range_are_refused(store: Store) -> None:
    with pytest.raises(LimitExceededError, match="exceeds TRANSFER_AMOUNT_MICROUNITS_MAX"):
        post(
            store,
            TransferRequest(
                "huge", "accrual", "EUR", {POOL: -(AMOUNT_MICROUNITS_MAX + 1), ALICE: AMOUNT_MICROUNITS_MAX + 1}
            ),
        )
    assert row_counts(store)["transfers"] == 0


# The content hash ----------------------------------------------------------------------------------
def _canonical_content_sha256(req: TransferRequest) -> str:
    """The definition, written the plain way: SHA-256 of canonical JSON with sorted (key, text) legs."""
    import hashlib

    from endcredits.audit import canonical_json

    return hashlib.sha256(
        canonical_json(
            {
                "code": req.code,
                "currency": req.currency,
                "legs": sorted((k, str(v)) for k, v in req.legs.items()),
                "memo": dict(sorted(req.memo.items())),
                "reverses": req.reverses_event_id,
            }
        ).encode()
    ).hexdigest()


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.text(max_size=12), st.integers(-(2**80), 2**80), max_size=6),
    st.dictionaries(st.text(max_size=5), st.text(max_size=8), max_size=3),
    st.sampled_from(["accrual", 'ac"crual', 'legs":0,']),
    st.one_of(st.none(), st.text(max_size=6)),
)
def test_the_content_hash_is_the_canonical_json_whatever_the_keys(
    legs: dict[str, int], memo: dict[str, str], code: str, reverses: str | None
) -> None:
    """Keys with quotes, backslashes, control characters or a code that spells '"legs":0,' take the same
    bytes as the plain definition (the written-out fast path only runs where no key needs an escape)."""
    req = TransferRequest("e", code, "EUR", legs, memo, reverses)
    assert req.content_sha256() == _canonical_content_sha256(req)


def test_the_content_hash_of_many_plain_legs_is_the_canonical_json() -> None:
    legs = {f"escrow:name:{i}:EUR": (i * 7919) % 10**9 - 5 for i in range(10_000)}
    req = TransferRequest("b/EUR/2026-01", "accrual", "EUR", legs, {"batch": "b", "period": "2026-01"})
    assert req.content_sha256() == _canonical_content_sha256(req)


@pytest.mark.parametrize("odd", ["", "é", '"', "\\", "\x01", "big"])
def test_the_content_hash_of_many_legs_with_odd_keys_or_amounts_is_the_canonical_json(odd: str) -> None:
    """Past 4,096 legs Arrow writes the legs' text; a key that needs an escape, a non-ASCII key or an amount
    beyond int64 still gives the canonical bytes."""
    legs = {f"escrow:name:{i}{odd if i % 997 == 3 and odd != 'big' else ''}:EUR": i + 1 for i in range(6_000)}
    if odd == "big":
        legs["pool:EUR"] = 10**25
    req = TransferRequest("b/EUR/2026-01", "accrual", "EUR", legs, {"batch": "b"})
    assert req.content_sha256() == _canonical_content_sha256(req)
