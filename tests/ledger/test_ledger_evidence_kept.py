"""Evidence kept per output and payee (batches paid on a recorded run, per work): the lines re-derive exactly
as accrual made them, ``verify`` checks them against the rows kept, and files kept line by line still read."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from sqlalchemy import select

from endcredits.ledger.accrue import ScoreSource, accrue_scored
from endcredits.ledger.evidence import (
    EVIDENCE_SCHEMA,
    PAYEE_EVIDENCE_SCHEMA,
    file_sha256,
    kept_per_payee,
    payee_rows,
    read_evidence,
    write_evidence,
)
from endcredits.ledger.evidence_lines import evidence_lines
from endcredits.ledger.verify import verify
from endcredits.royalties import parse_agreement
from endcredits.royalties.records import save_agreement
from endcredits.royalties.usage import OutputIn
from endcredits.store.engine import Store
from endcredits.store.schema import accrual_batches
from helpers_money import World, agreement_text, on_time, record_scores_run

TEXT = agreement_text(pool_rate="0.37", payout_threshold="0.01")


def _world(store: Store) -> World:
    w = World(store)
    a = parse_agreement(TEXT)
    with store.write() as conn:
        save_agreement(conn, a.id, a.version, a.body, a.body_sha256)
    return w


def _outputs() -> list[OutputIn]:
    return [
        OutputIn("o1", "m", 123_456_789, "EUR", on_time(1, 5)),
        OutputIn("o2", "m", 98_765_431, "EUR", on_time(1, 9)),
        OutputIn("o3", "m", 7, "EUR", on_time(2, 28)),
    ]


def _scores(w: World) -> dict[str, dict[str, float]]:
    return {
        "o1": {w.song: 0.7, w.film: 0.2, w.orphan: 0.1},
        "o2": {w.song: 0.05, w.film: 1.5, w.orphan: -0.3},
        "o3": {w.song: 0.0, w.film: 0.0, w.orphan: 3.0},
    }


def _accrue(w: World, source: ScoreSource, scores: Any = None) -> None:
    per = "work" if scores is not None else None
    accrue_scored(w.store, _outputs(), scores, source=source, per=per, agreement_id="test-2026", batch_id="b1")


def _files(store: Store) -> list[Any]:
    with store.read() as conn:
        return conn.execute(select(accrual_batches).order_by(accrual_batches.c.event_id)).all()


def _sorted(table: pa.Table) -> list[dict[str, Any]]:
    rows = [{k: v for k, v in r.items() if k != "batch_event_id"} for r in table.to_pylist()]
    return sorted(rows, key=lambda r: (r["output_id"], r["payee"], r["attributed_work"], r["source_work"], r["role"]))


def test_a_run_keeps_rows_per_payee_whose_lines_rederive_exactly(store: Store, store_factory: Any) -> None:
    by_run, by_file = _world(store), _world(store_factory())
    run = record_scores_run(by_run.store, by_run.manifest, _scores(by_run))
    _accrue(by_run, ScoreSource.run(run.id))
    _accrue(by_file, ScoreSource.external("the operator's own TRAK"), _scores(by_file))
    kept = [read_evidence(by_run.store.data_dir / r.evidence_path) for r in _files(by_run.store)]
    written = [read_evidence(by_file.store.data_dir / r.evidence_path) for r in _files(by_file.store)]
    assert all(t.schema == PAYEE_EVIDENCE_SCHEMA for t in kept)
    assert all(t.schema == EVIDENCE_SCHEMA and not kept_per_payee(t) for t in written)
    lines = pa.concat_tables(written)
    assert sum(payee_rows(t).num_rows for t in kept) < lines.num_rows  # fewer rows than lines
    # Re-derived, the lines are the lines external scores wrote, amount by amount, account by account.
    assert _sorted(evidence_lines(by_run.store, "b1")) == _sorted(lines)
    assert _sorted(evidence_lines(by_run.store, "b1", {"o2"})) == [r for r in _sorted(lines) if r["output_id"] == "o2"]
    assert _sorted(evidence_lines(by_file.store, "b1", {"o2"})) == [r for r in _sorted(lines) if r["output_id"] == "o2"]
    assert verify(by_run.store).ok


def test_verify_reports_a_kept_row_its_lines_do_not_give(store: Store) -> None:
    """Moving a subunit from one payee's row to another's in one output keeps every pool whole: only
    re-deriving the lines finds it."""
    w = _world(store)
    run = record_scores_run(w.store, w.manifest, _scores(w))
    _accrue(w, ScoreSource.run(run.id))
    row = _files(store)[0]
    path = store.data_dir / row.evidence_path
    table = read_evidence(path)
    outputs = table["output_id"].cast(pa.string()).to_pylist()
    sub = table["amount_subunits"].to_numpy().copy()
    first = outputs.index("o1")
    assert outputs[first + 1] == "o1" and sub[first] > 0 and sub[first + 1] < 2**32 - 1
    sub[first] -= 1
    sub[first + 1] += 1
    forged = table.set_column(table.schema.get_field_index("amount_subunits"), "amount_subunits", pa.array(sub))
    path.unlink()
    write_evidence(path, forged)
    with store.write() as conn:
        conn.execute(
            accrual_batches.update()
            .where(accrual_batches.c.event_id == row.event_id)
            .values(evidence_sha256=file_sha256(path))
        )
    problems = verify(store).problems
    assert any("the lines re-derived for output o1" in p for p in problems), problems


def test_credits_changed_after_accrual_do_not_change_the_rederived_lines(store: Store) -> None:
    """The lines re-derive from the shares recorded with the batch, not from the registry as it is now."""
    from endcredits.store.schema import credits

    w = _world(store)
    run = record_scores_run(w.store, w.manifest, _scores(w))
    _accrue(w, ScoreSource.run(run.id))
    before = _sorted(evidence_lines(store, "b1"))
    with store.write() as conn:
        conn.execute(credits.update().values(weight=credits.c.weight * 7 + 1))
    assert _sorted(evidence_lines(store, "b1")) == before
    assert verify(store).ok
