"""``verify`` re-derives the ledger: it passes after real work and reports every kind of tampering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


def test_verify_follows_each_accrual_to_its_run_and_lists_external_scores_as_such(store: Store) -> None:
    from endcredits.ledger.accrue import ScoreSource, accrue_scored
    from endcredits.manifest.records import set_manifest_checkpoint
    from endcredits.royalties.records import save_agreement
    from endcredits.royalties.usage import OutputIn
    from endcredits.store.schema import attribution_runs
    from helpers_money import World, record_scores_run

    w = World(store)
    ag = agreement(pool_rate="0.5")
    with store.write() as conn:
        save_agreement(conn, ag.id, ag.version, ag.body, ag.body_sha256)
    run = record_scores_run(store, w.manifest, {"r1": {w.song: 1.0, w.film: 2.0}, "r2": {w.song: 3.0, w.film: 0.0}})
    outs = [OutputIn(o, "m", 10**9, "EUR", on_time(1, 3 + i)) for i, o in enumerate(("r1", "r2"))]
    accrue_scored(store, outs, None, source=ScoreSource.run(run.id), per=None, agreement_id=ag.id, batch_id="run")
    hand = [OutputIn("x1", "m", 10**9, "EUR", on_time(2))]
    accrue_scored(store, hand, {"x1": {w.orphan: 1.0}}, source=ScoreSource.external("a licensee's own scores"),
                  per="work", agreement_id=ag.id, batch_id="hand")  # fmt: skip
    report = verify(store)
    assert report.ok, report.problems
    assert report.external == ["hand/EUR/2026-02: external scores (a licensee's own scores)"]
    assert {k: report.checked[k] for k in ("attribution_runs", "accruals_from_runs", "accruals_external")} == {
        "attribution_runs": 1,
        "accruals_from_runs": 1,
        "accruals_external": 1,
    }
    # A batch accrued before sources were recorded (migration 0003) is counted, not a problem.
    with store.write() as conn:
        conn.execute(accrual_batches.update().where(accrual_batches.c.event_id.like("hand/%")).values(
            scores_external_reason=None))  # fmt: skip
    report = verify(store)
    assert report.ok and report.external == [] and report.checked["accruals_unsourced"] == 1
    # The run's scores file altered: reported; the run's checkpoint no longer the manifest's: reported.
    path = store.data_dir / run.scores_path
    kept = path.read_bytes()
    path.write_bytes(kept[:-20] + b"x" * 20)
    assert f"the scores file of attribution run {run.id} ({run.scores_path}) is unreadable" in " ".join(
        verify(store).problems
    )
    from endcredits.attribution.records import RunScores, _write_scores

    _write_scores(path, RunScores.of_matrix("work", ["r1"], [w.song], np.array([[9.0]])))
    assert f"attribution run {run.id} ({run.scores_path}) does not hash to the SHA-256 the run recorded" in " ".join(
        verify(store).problems
    )
    path.write_bytes(kept)
    assert verify(store).ok
    with store.write() as conn:
        set_manifest_checkpoint(conn, w.manifest.id, "b" * 64)
    assert any("is bound to checkpoint bbbbbbbbbbbbbbbb" in p for p in verify(store).problems)
    with store.write() as conn:
        conn.execute(attribution_runs.delete())
    assert f"accrual run/EUR/2026-01 names attribution run {run.id}, which is not recorded" in verify(store).problems
