"""Failures between the files and the commit, concurrent reads, and edge amounts — on both backends."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import event, select

from endcredits.ledger.accrue import accrue
from endcredits.ledger.verify import verify
from endcredits.limits import REVENUE_PER_OUTPUT_MICROUNITS_MAX
from endcredits.payouts.batches import create_payout_batch
from endcredits.payouts.files import Debtor
from endcredits.payouts.iban import make_test_iban
from endcredits.registry.records import set_payout_account
from endcredits.store.engine import Store, init_store
from endcredits.store.schema import payout_batches
from helpers_money import EXTERNAL, agreement, balances, evidence_files, on_time, people, register_model, usage

DEBTOR = Debtor(name="operator", iban=make_test_iban("DE", 1), bic="TESTDEFF")


class CommitFailed(Exception):
    pass


@contextmanager
def failing_commit(store: Store) -> Iterator[None]:
    """The next commit fails, as a crash or a lost connection at commit would."""
    state = {"armed": True}

    def fail(_conn: object) -> None:
        if state["armed"]:
            state["armed"] = False
            raise CommitFailed("simulated commit failure")

    event.listen(store.engine, "commit", fail)
    try:
        yield
    finally:
        event.remove(store.engine, "commit", fail)


def test_a_failed_commit_leaves_no_bank_file_and_the_batch_can_be_retried(store: Store) -> None:
    (pid,) = people(store, "payee")
    with store.write() as conn:
        set_payout_account(conn, pid, iban=make_test_iban("DE", 7), bic="TESTDEFF")
    register_model(store)
    accrue(
        store,
        usage([("o1", 10_000_000_000, on_time(1), [(f"person:{pid}", 1)])]),
        agreement(pool_rate="0.5"),
        event_id="b1",
        source=EXTERNAL,
    )

    def pay(batch_id: str) -> object:
        return create_payout_batch(
            store,
            batch_id=batch_id,
            currency="EUR",
            threshold_microunits=0,
            debtor=DEBTOR,
            execution_date=dt.date(2026, 12, 1),
        )

    with failing_commit(store), pytest.raises(CommitFailed):
        pay("PAY-1")
    # Nothing an operator could send to a bank, and the money is still owed.
    assert not (store.data_dir / "payouts" / "PAY-1").exists()
    assert balances(store)[f"payable:person:{pid}:EUR"] == 5_000_000_000
    retried = pay("PAY-1")
    assert retried.status == "created"  # type: ignore[attr-defined]
    assert (store.data_dir / "payouts" / "PAY-1" / "pain001.xml").exists()
    assert pay("PAY-2").status == "empty"  # type: ignore[attr-defined]
    with store.read() as conn:
        assert [r.id for r in conn.execute(select(payout_batches.c.id))] == ["PAY-1"]
    assert verify(store).ok


def test_a_failed_commit_leaves_an_orphan_evidence_file_that_the_retry_replaces(store: Store) -> None:
    (pid,) = people(store, "payee")
    register_model(store)
    batch = usage([("o1", 1_000_000, on_time(3), [(f"person:{pid}", 1)])])
    with failing_commit(store), pytest.raises(CommitFailed):
        accrue(store, batch, agreement(), event_id="b1", source=EXTERNAL)
    assert len(evidence_files(store)) == 1  # the orphan: written, never committed
    assert accrue(store, batch, agreement(), event_id="b1", source=EXTERNAL).status == "created"
    assert len(evidence_files(store)) == 1
    assert accrue(store, batch, agreement(), event_id="b1", source=EXTERNAL).status == "exists"
    assert verify(store).ok


def test_a_read_after_a_write_does_not_hold_the_sqlite_write_lock(tmp_path: Path) -> None:
    # SQLite only: its write lock is the one a read could wrongly take (PostgreSQL's case is the snapshot test).
    store = init_store(tmp_path / "data", None)
    people(store, "someone")  # a write on a pooled connection
    db_file = store.data_dir / "endcredits.sqlite3"
    with store.read() as conn:
        conn.execute(select(payout_batches.c.id)).all()
        other = sqlite3.connect(db_file, timeout=0.2, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # would raise "database is locked" if the read held it
            other.execute("ROLLBACK")
        finally:
            other.close()
    store.dispose()


def test_verify_reads_one_snapshot(store: Store) -> None:
    (pid,) = people(store, "p")
    register_model(store)
    accrue(
        store,
        usage([("o1", 3, on_time(1), [(f"person:{pid}", 1), ("person:1", 1)])]),
        agreement(pool_rate="1"),
        event_id="b1",
        source=EXTERNAL,
    )
    with store.read() as reader:
        before = reader.execute(select(payout_batches.c.id)).all()
        # A batch commits while the read is open; the open read must not see half of it.
        accrue(
            store,
            usage([("o2", 5, on_time(1), [(f"person:{pid}", 1)])]),
            agreement(pool_rate="1"),
            event_id="b2",
            source=EXTERNAL,
        )
        from endcredits.store.schema import outputs

        seen = {r.id for r in reader.execute(select(outputs.c.id))}
    assert before == [] and seen == {"o1"}
    assert verify(store).ok


def test_a_payee_owed_more_than_int64_in_one_batch(store: Store) -> None:
    (pid,) = people(store, "a")
    register_model(store)
    big = REVENUE_PER_OUTPUT_MICROUNITS_MAX
    batch = usage([(f"o{i}", big, on_time(1), [(f"person:{pid}", 1)]) for i in range(3)])
    s = accrue(store, batch, agreement(pool_rate="1"), event_id="b1", source=EXTERNAL)
    assert s.posted_microunits == 3 * big > (1 << 63)
    assert balances(store)[f"payable:person:{pid}:EUR"] == 3 * big
    assert verify(store).ok


def test_a_dry_run_over_several_months_reports_what_the_real_run_posts(store: Store, tmp_path: Path) -> None:
    payees = [f"person:{p}" for p in people(store, "x", "y", "z")]
    register_model(store)
    batch = usage([("o1", 2, on_time(1), [(p, 1) for p in payees]), ("o2", 2, on_time(2), [(p, 1) for p in payees])])
    ag = agreement(pool_rate="1")
    dry = accrue(store, batch, ag, event_id="b1", dry_run=True, source=EXTERNAL)
    real = accrue(store, batch, ag, event_id="b1", source=EXTERNAL)
    assert (dry.posted_microunits, dry.escrow_microunits, dry.suspense_delta_microunits) == (
        real.posted_microunits,
        real.escrow_microunits,
        real.suspense_delta_microunits,
    )


def _forge_segment(
    store: Store, event_id: str, *, legs: dict[str, int] | None = None, carries: dict[str, int] | None = None
) -> None:
    """Rewrite an accrual's segment as a forger would: new blobs and a matching SHA-256 column (the audit
    entry and the transfer's content hash still say what was posted)."""
    from sqlalchemy import select

    from endcredits.ledger.segments import encode_carries, encode_legs, iter_segments, segment_sha256
    from endcredits.store.schema import ledger_segments, transfers

    with store.write() as conn:
        tid = conn.execute(select(transfers.c.id).where(transfers.c.event_id == event_id)).scalar_one()
        seg = next(iter_segments(conn, transfer_ids=[tid], carries=True))
        assert seg.payees is not None and seg.subunits is not None
        new_legs = seg.legs()
        for key, delta in (legs or {}).items():
            new_legs[key] += delta
        new_carries = dict(zip(seg.payees.to_pylist(), seg.subunits.to_pylist()))
        for payee, delta in (carries or {}).items():
            new_carries[payee] += delta
        legs_blob = encode_legs(list(new_legs), list(new_legs.values()))
        carries_blob = encode_carries(list(new_carries), list(new_carries.values()))
        conn.execute(
            ledger_segments.update()
            .where(ledger_segments.c.transfer_id == tid)
            .values(legs_arrow=legs_blob, carries_arrow=carries_blob, sha256=segment_sha256(legs_blob, carries_blob))
        )


def _forge_snapshot(
    store: Store, *, balances: dict[str, int] | None = None, carries: dict[str, int] | None = None
) -> None:
    """Rewrite the ledger snapshot as a forger would: new blobs and a matching SHA-256 column (the fold's
    audit entry still records what was folded)."""
    import dataclasses

    import numpy as np

    from endcredits.ledger.snapshot import read_snapshot, write_snapshot

    with store.write() as conn:
        snap = read_snapshot(conn, live=False)
        values = snap.balances.astype(object)
        for i, key in enumerate(snap.keys.to_pylist()):
            values[i] += (balances or {}).get(key, 0)
        subunits = snap.carry_subunits.copy()
        for i, payee in enumerate(snap.carry_payees.to_pylist()):
            subunits[i] += (carries or {}).get(payee, 0)
        write_snapshot(conn, dataclasses.replace(snap, balances=values.astype(np.int64), carry_subunits=subunits))


def test_verify_replays_the_evidence_into_legs_and_carries(store: Store) -> None:

    from endcredits.ledger.records import fold_pending

    a, b = people(store, "a", "b")
    register_model(store)
    accrue(
        store,
        usage([("o1", 10, on_time(1), [(f"person:{a}", 1), (f"person:{b}", 2)])]),
        agreement(pool_rate="1"),
        event_id="b1",
        source=EXTERNAL,
    )
    assert verify(store).ok
    # Pending: the segment's own carry is what the evidence must replay to.
    _forge_segment(store, "b1/EUR/2026-01", carries={f"person:{a}": 1})
    problems = verify(store).problems
    assert any("replays to" in problem for problem in problems), problems
    assert any("does not match the SHA-256 its audit entry recorded" in problem for problem in problems), problems
    _forge_segment(store, "b1/EUR/2026-01", carries={f"person:{a}": -1})
    assert verify(store).ok  # the same bytes again
    with store.write() as conn:
        fold_pending(conn)
    assert verify(store).ok
    # Folded: the snapshot's carries are what the evidence must replay to.
    _forge_snapshot(store, carries={f"person:{a}": 1})
    problems = verify(store).problems
    assert any("replays to" in problem for problem in problems), problems
    assert any("snapshot does not match the SHA-256" in problem for problem in problems), problems
    _forge_snapshot(store, carries={f"person:{a}": -1})
    assert verify(store).ok  # the same bytes again
    # Move one microunit from b's leg to a's, and their balances with it: every sum still agrees; the
    # evidence, the recorded hashes and the transfer's content hash say otherwise.
    a_key, b_key = f"payable:person:{a}:EUR", f"payable:person:{b}:EUR"
    _forge_segment(store, "b1/EUR/2026-01", legs={a_key: 1, b_key: -1})
    _forge_snapshot(store, balances={a_key: 1, b_key: -1})
    problems = verify(store).problems
    assert any("legs differ from what its evidence posts" in problem for problem in problems), problems
    assert any("does not hold the legs that were posted" in problem for problem in problems), problems
    assert not any("stored balance" in problem for problem in problems), problems


def test_a_failure_after_the_evidence_began_removes_every_file_of_the_batch(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The evidence file is written while the carries are read: a failure there (the second month's group,
    the first one's file already written) removes both files and writes nothing; the retry posts it all."""
    import endcredits.ledger.accrue as accrue_module

    (pid,) = people(store, "payee")
    register_model(store)
    batch = usage(
        [
            ("o1", 1_000_000, on_time(3), [(f"person:{pid}", 1)]),
            ("o2", 3_000_000, on_time(4), [(f"person:{pid}", 1)]),
        ]
    )
    real = accrue_module.read_carries
    calls: list[int] = []

    def failing(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise CommitFailed("simulated failure while the carries are read")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    with monkeypatch.context() as m:
        m.setattr(accrue_module, "read_carries", failing)
        with pytest.raises(CommitFailed):
            accrue(store, batch, agreement(), event_id="b1", source=EXTERNAL)
    assert evidence_files(store) == []
    assert balances(store) == {}
    assert accrue(store, batch, agreement(), event_id="b1", source=EXTERNAL).status == "created"
    assert len(evidence_files(store)) == 2
    assert verify(store).ok
