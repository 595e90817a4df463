"""``verify`` re-derives the ledger: it passes after real work and reports every kind of tampering."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, text

from endcredits.ledger.accrue import accrue
from endcredits.ledger.escrow import claim_escrow
from endcredits.ledger.verify import verify
from endcredits.registry.records import CreditIn, WorkIn, add_credits, add_works, name_ids
from endcredits.store.engine import Store
from endcredits.store.schema import accrual_batches, audit_log
from helpers_money import EXTERNAL, agreement, evidence_files, on_time, people, register_model, usage


@pytest.fixture
def worked(store: Store) -> Store:
    """A store after two accrual batches (payable, escrow and carried fractions) and an escrow claim."""
    alice, carol = people(store, "alice", "carol")
    with store.write() as conn:
        bob = name_ids(conn, ["Bob Credited"])["Bob Credited"]
    register_model(store)
    ag = agreement(pool_rate="1/3")
    lines = [(f"person:{alice}", 3), (f"name:{bob}", 2), (f"person:{carol}", 1)]
    accrue(
        store,
        usage([("o1", 1000, on_time(1), lines), ("o2", 77, on_time(1, 9), lines[:2])]),
        ag,
        event_id="b1",
        source=EXTERNAL,
    )
    accrue(store, usage([("o3", 5, on_time(2), lines)]), ag, event_id="b2", source=EXTERNAL)
    claim_escrow(store, carol, name_id=bob)
    return store


def test_verify_passes_after_accrual_and_claim(worked: Store) -> None:
    report = verify(worked)
    assert report.problems == []
    assert report.ok
    assert report.checked["transfers"] == 3  # two accruals, one escrow claim
    assert report.checked["evidence_files"] == 2
    assert report.checked["outputs"] == 3
    assert report.checked["audit_entries"] > 3


def test_an_altered_audit_payload_is_reported(worked: Store) -> None:
    with worked.read() as conn:
        entry = conn.execute(select(audit_log).where(audit_log.c.kind == "transfer").order_by(audit_log.c.seq)).first()
    assert entry is not None
    forged = entry.payload.replace('"legs":', '"legs":1,"x":')
    with worked.write() as conn:
        conn.execute(text("UPDATE audit_log SET payload = :p WHERE seq = :s"), {"p": forged, "s": entry.seq})
    problems = verify(worked).problems
    assert f"audit entry {entry.seq} (transfer {entry.subject}) was altered: its hash does not match" in problems


def test_a_deleted_audit_entry_is_reported(worked: Store) -> None:
    with worked.write() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    problems = verify(worked).problems
    assert "audit entry 2 is missing (found 3 next)" in problems
    assert "audit entry 3 does not follow entry 2 (previous hash differs)" in problems


def test_an_altered_balance_is_reported(worked: Store) -> None:
    with worked.write() as conn:
        row = conn.execute(
            text(
                "SELECT a.id, a.key, CAST(a.balance_microunits AS TEXT) FROM accounts a "
                "WHERE a.key LIKE 'payable:%' ORDER BY a.key"
            )
        ).first()
        assert row is not None
        account_id, key, value = row
        bumped = str(int(value) + 1)
        conn.execute(
            text("UPDATE accounts SET balance_microunits = :v WHERE id = :a"),
            {"v": bumped if worked.backend == "sqlite" else int(bumped), "a": account_id},
        )
    problems = verify(worked).problems
    assert f"account {key}: stored balance {bumped} != sum of legs {value}" in problems


def test_credits_naming_a_missing_work_or_payee_are_reported(worked: Store) -> None:
    # credits carry no foreign keys (a hot table, see store.schema): add_credits checks, verify re-checks.
    with worked.write() as conn:
        (work,) = add_works(conn, [WorkIn(b"a tune", "A tune", "abc-tune")])
        bob = name_ids(conn, ["Bob Credited"])["Bob Credited"]
        add_credits(
            conn,
            [
                CreditIn(work, f"name:{bob}", "endcredits:composer"),
                CreditIn(work, f"name:{bob}", "endcredits:transcriber"),
            ],
        )
    report = verify(worked)
    assert report.ok and report.checked["credits"] == 2
    with worked.write() as conn:
        first, second = conn.execute(text("SELECT id FROM credits ORDER BY id LIMIT 2")).scalars().all()
        conn.execute(text("UPDATE credits SET work_seq = 999999 WHERE id = :i"), {"i": first})
        conn.execute(text("UPDATE credits SET person_id = 888888, name_id = NULL WHERE id = :i"), {"i": second})
    problems = verify(worked).problems
    assert "credits refer to works that are not registered (work_seq [999999])" in problems
    assert "credits refer to people that are not registered (person_id [888888])" in problems


def _evidence_of(store: Store, batch: str) -> Path:
    with store.read() as conn:
        rel = conn.execute(
            select(accrual_batches.c.evidence_path).where(accrual_batches.c.batch_event_id == batch)
        ).scalar_one()
    path = store.data_dir / str(rel)
    assert path in evidence_files(store)
    return path


def test_a_deleted_or_truncated_evidence_file_is_reported(worked: Store) -> None:
    deleted, truncated = _evidence_of(worked, "b1"), _evidence_of(worked, "b2")
    deleted.unlink()
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    problems = verify(worked).problems
    assert problems == [
        f"evidence file {deleted} is missing",
        f"evidence file {truncated} does not match its recorded SHA-256: it was altered or truncated",
    ]


def test_evidence_whose_outputs_do_not_add_up_to_their_pools_is_reported(worked: Store) -> None:
    """A forger who moves a subunit from one output's line to another's in the same file, and records the
    new file's hash, keeps the batch's total; each output's lines no longer add up to its own pool."""
    import pyarrow as pa

    from endcredits.ledger.evidence import file_sha256, read_evidence, write_evidence

    with worked.read() as conn:
        row = conn.execute(select(accrual_batches).where(accrual_batches.c.batch_event_id == "b1")).one()
    path = worked.data_dir / row.evidence_path
    table = read_evidence(path)
    outputs = table["output_id"].to_pylist()
    sub = table["amount_subunits"].to_numpy().copy()
    first_o1, first_o2 = outputs.index("o1"), outputs.index("o2")
    assert sub[first_o1] > 0 and sub[first_o2] < 2**32 - 1
    sub[first_o1] -= 1
    sub[first_o2] += 1
    forged = table.set_column(
        table.schema.get_field_index("amount_subunits"), "amount_subunits", pa.array(sub, pa.int64())
    )
    path.unlink()
    write_evidence(path, forged)
    with worked.write() as conn:
        conn.execute(
            accrual_batches.update()
            .where(accrual_batches.c.event_id == row.event_id)
            .values(evidence_sha256=file_sha256(path))
        )
    problems = verify(worked).problems
    assert any("the lines of output o1 do not add up to its pool" in p for p in problems), problems
