"""Evidence kept per batch (batches paid on a recorded run, per work: each output's pool, each payee's total):
the lines re-derive exactly as accrual made them, ``verify`` checks them against the rows kept, and files kept
per output and payee or line by line still read."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select

from endcredits.ledger.accrue import ScoreSource, accrue_scored
from endcredits.ledger.evidence import (
    EVIDENCE_SCHEMA,
    PAYEE_EVIDENCE_SCHEMA,
    file_sha256,
    kept_per_batch,
    kept_per_payee,
    output_rows,
    payee_rows,
    per_batch_table,
    per_payee_table,
    read_evidence,
    share_rows,
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


def test_a_run_keeps_rows_per_payee_and_output_whose_lines_rederive_exactly(store: Store, store_factory: Any) -> None:
    by_run, by_file = _world(store), _world(store_factory())
    run = record_scores_run(by_run.store, by_run.manifest, _scores(by_run))
    _accrue(by_run, ScoreSource.run(run.id))
    _accrue(by_file, ScoreSource.external("the operator's own TRAK"), _scores(by_file))
    kept = [read_evidence(by_run.store.data_dir / r.evidence_path) for r in _files(by_run.store)]
    written = [read_evidence(by_file.store.data_dir / r.evidence_path) for r in _files(by_file.store)]
    assert all(t.schema == PAYEE_EVIDENCE_SCHEMA for t in kept)
    assert all(t.schema == EVIDENCE_SCHEMA and not kept_per_payee(t) for t in written)
    lines = pa.concat_tables(written)
    assert all(kept_per_batch(t) for t in kept)
    # A row per payee of each group and one per output, not one per output and payee.
    assert [payee_rows(t).num_rows for t in kept] == [len(set(payee_rows(t)["payee"].to_pylist())) for t in kept]
    assert sum(output_rows(t).num_rows for t in kept) == len(_outputs())
    assert all(set(payee_rows(t)["output_id"].to_pylist()) == {""} for t in kept)
    # Re-derived, the lines are the lines external scores wrote, amount by amount, account by account.
    assert _sorted(evidence_lines(by_run.store, "b1")) == _sorted(lines)
    assert _sorted(evidence_lines(by_run.store, "b1", {"o2"})) == [r for r in _sorted(lines) if r["output_id"] == "o2"]
    assert _sorted(evidence_lines(by_file.store, "b1", {"o2"})) == [r for r in _sorted(lines) if r["output_id"] == "o2"]
    assert verify(by_run.store).ok


def _rewrite(store: Store, row: Any, table: pa.Table) -> None:
    """Replace the evidence file of group ``row`` by ``table`` and record its SHA-256 (as a forger would)."""
    path = store.data_dir / row.evidence_path
    path.unlink()
    write_evidence(path, table)
    with store.write() as conn:
        conn.execute(
            accrual_batches.update()
            .where(accrual_batches.c.event_id == row.event_id)
            .values(evidence_sha256=file_sha256(path))
        )


def _with_subunits(table: pa.Table, sub: Any) -> pa.Table:
    return table.set_column(table.schema.get_field_index("amount_subunits"), "amount_subunits", pa.array(sub))


def test_verify_reports_a_payee_total_its_lines_do_not_give(store: Store) -> None:
    """Moving a subunit from one payee's total to another's keeps the batch's pool whole, and the ledger's
    legs are replayed from the re-derived lines: only comparing them with the rows kept finds it."""
    w = _world(store)
    run = record_scores_run(w.store, w.manifest, _scores(w))
    _accrue(w, ScoreSource.run(run.id))
    row = _files(store)[0]
    table = read_evidence(store.data_dir / row.evidence_path)
    assert kept_per_batch(table)
    payees = table["payee"].cast(pa.string()).to_pylist()
    shares = table["share"].cast(pa.string()).to_pylist()
    totals = [i for i, (p, s) in enumerate(zip(payees, shares, strict=True)) if p and not s]
    sub = table["amount_subunits"].to_numpy().copy()
    a, b = next((i, j) for i in totals for j in totals if sub[i] > 0 and sub[j] < 2**32 - 1 and i != j)
    sub[a] -= 1
    sub[b] += 1
    _rewrite(store, row, _with_subunits(table, sub))
    problems = verify(store).problems
    assert any(f"the lines re-derived for payee {payees[a]} add up to" in p for p in problems), problems
    assert not any("the lines re-derived for output" in p for p in problems)  # every output's pool is whole


def test_verify_reports_an_output_pool_its_lines_do_not_give(store: Store) -> None:
    w = _world(store)
    run = record_scores_run(w.store, w.manifest, _scores(w))
    _accrue(w, ScoreSource.run(run.id))
    row = _files(store)[0]
    table = read_evidence(store.data_dir / row.evidence_path)
    outputs = output_rows(table)["output_id"].to_pylist()
    position = table["output_id"].cast(pa.string()).to_pylist().index(outputs[0])
    sub = table["amount_subunits"].to_numpy().copy()
    sub[position] += 1
    _rewrite(store, row, _with_subunits(table, sub))
    problems = verify(store).problems
    assert any(f"the lines re-derived for output {outputs[0]} add up to" in p for p in problems), problems


def test_files_kept_per_output_and_payee_still_rederive_and_verify(store: Store) -> None:
    """A file written with a row per output and payee (before evidence was kept per batch) reads as it is:
    its lines re-derive, and verify compares them with each of its rows."""
    w = _world(store)
    run = record_scores_run(w.store, w.manifest, _scores(w))
    _accrue(w, ScoreSource.run(run.id))
    rows = _files(store)
    lines = evidence_lines(store, "b1")
    for row in rows:
        table = read_evidence(store.data_dir / row.evidence_path)
        mine = lines.filter(
            pc.is_in(lines["output_id"].cast(pa.string()), output_rows(table)["output_id"].cast(pa.string()))
        )
        old = per_payee_table(mine, share_rows(table))
        assert kept_per_payee(old) and not kept_per_batch(old)
        _rewrite(store, row, old)
    assert _sorted(evidence_lines(store, "b1")) == _sorted(lines)
    assert verify(store).ok
    row = rows[0]
    table = read_evidence(store.data_dir / row.evidence_path)
    sub = table["amount_subunits"].to_numpy().copy()
    sub[0] += 1
    _rewrite(store, row, _with_subunits(table, sub))
    assert any("the lines re-derived for output" in p for p in verify(store).problems)


def test_payee_totals_that_could_pass_63_bits_are_kept_per_output_and_payee(store: Store) -> None:
    w = _world(store)
    run = record_scores_run(w.store, w.manifest, _scores(w))
    _accrue(w, ScoreSource.run(run.id))
    lines = evidence_lines(store, "b1")
    big = lines.set_column(
        lines.schema.get_field_index("amount_microunits"),
        "amount_microunits",
        pa.array([2**59] * lines.num_rows, pa.int64()),
    )
    assert kept_per_batch(per_batch_table(lines, {}))
    kept = per_batch_table(big, {})
    assert not kept_per_batch(kept) and payee_rows(kept).num_rows == payee_rows(per_payee_table(big, {})).num_rows


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


def test_a_statement_on_evidence_kept_per_batch_equals_one_on_every_line(store: Store, store_factory: Any) -> None:
    """A person's statement re-derives only the outputs that can pay them (o3 pays only the orphan work),
    and shows what the same scores kept line by line show: each output's line, pools, totals and carries."""
    from endcredits.ledger.evidence_lines import LineSource
    from endcredits.payouts.statements import build_statement

    by_run, by_file = _world(store), _world(store_factory())
    run = record_scores_run(by_run.store, by_run.manifest, _scores(by_run))
    _accrue(by_run, ScoreSource.run(run.id))
    _accrue(by_file, ScoreSource.external("the operator's own TRAK"), _scores(by_file))
    with store.read() as conn:
        lines = LineSource(store, conn)
        paying = [
            lines.outputs_paying(g, read_evidence(store.data_dir / g.evidence_path), {f"person:{by_run.alice}"})
            for g in _files(store)
        ]
    assert set().union(*paying) == {"o1", "o2"}

    def shown(w: World, person: int, period: str) -> Any:
        st = build_statement(w.store, person, period, "EUR")
        assert st.reconciles()
        drop = ("scores_run_id", "scores_method", "scores_external_reason")
        rows = sorted(({k: v for k, v in r.items() if k not in drop} for r in st.lines), key=str)
        kept = {o: {k: v for k, v in e.items() if k != "scores"} for o, e in st.outputs.items()}
        return rows, kept, st.model_pools, st.lines_subunits_total, st.carried_in_subunits, st.carried_out_subunits

    for person, period in ((by_run.alice, "2026-01"), (by_run.dan, "2026-01"), (by_run.alice, "2026-02")):
        assert shown(by_run, person, period) == shown(by_file, person, period)
    assert shown(by_run, by_run.alice, "2026-01")[0]  # it has lines to compare
