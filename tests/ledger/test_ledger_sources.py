"""Invariant 8 on both backends: money moves only on scores from a recorded attribution run, or on scores the
operator marks as external, and every accrual batch records which."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from endcredits.errors import ConflictError, EvidenceError, ManifestError, ValidationError
from endcredits.ledger.accrue import ScoreSource, accrue_scored
from endcredits.royalties import parse_agreement
from endcredits.royalties.records import save_agreement
from endcredits.royalties.usage import OutputIn
from endcredits.store.engine import Store
from endcredits.store.schema import accrual_batches
from helpers_money import World, agreement_text, ledger_snapshot, on_time, record_scores_run, row_counts

TEXT = agreement_text(pool_rate="0.37", payout_threshold="0.01")


def _world(store: Store, text: str = TEXT) -> World:
    w = World(store)
    a = parse_agreement(text)
    with store.write() as conn:
        save_agreement(conn, a.id, a.version, a.body, a.body_sha256)
    return w


def _outputs() -> list[OutputIn]:
    return [
        OutputIn("o1", "m", 123_456_789, "EUR", on_time(1, 5)),
        OutputIn("o2", "m", 98_765_431, "EUR", on_time(2, 9)),
        OutputIn("o3", "m", 7, "EUR", on_time(2, 28)),
    ]


def _scores(w: World) -> dict[str, dict[str, float]]:
    return {
        "o1": {w.song: 0.7, w.film: 0.2, w.orphan: 0.1},
        "o2": {w.song: 0.05, w.film: 1.5, w.orphan: -0.3},
        "o3": {w.song: 0.0, w.film: 0.0, w.orphan: 3.0},
    }


def _accrue(w: World, source: ScoreSource, scores: Any = None, **kw: Any) -> Any:
    per = "work" if scores is not None else None
    return accrue_scored(
        w.store, _outputs(), scores, source=source, per=per, agreement_id="test-2026", batch_id="b1", **kw
    )


def _sources(store: Store) -> list[tuple[str, str | None, str | None]]:
    with store.read() as conn:
        rows = conn.execute(select(accrual_batches).order_by(accrual_batches.c.event_id)).all()
    return [(r.event_id, r.scores_run_id, r.scores_external_reason) for r in rows]


def _without_content(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The ledger, but for each batch's content hash (which covers its source)."""
    return {**snapshot, "accruals": [(e, *rest) for e, _content, *rest in snapshot["accruals"]]}


def test_a_run_accrues_exactly_as_its_scores_marked_external_but_for_the_recorded_source(
    store: Store, store_factory: Any
) -> None:
    by_run, by_file = _world(store), _world(store_factory())
    run = record_scores_run(by_run.store, by_run.manifest, _scores(by_run))
    s_run = _accrue(by_run, ScoreSource.run(run.id))
    s_file = _accrue(by_file, ScoreSource.external("the operator's own TRAK"), _scores(by_file))
    assert (
        s_run.to_json() | {"attribution_run_id": None, "external_reason": "the operator's own TRAK"} == s_file.to_json()
    )
    assert s_run.pool_microunits > 0 and s_run.lines > 0
    assert _without_content(ledger_snapshot(by_run.store)) == _without_content(ledger_snapshot(by_file.store))
    assert ledger_snapshot(by_run.store) != ledger_snapshot(by_file.store)  # the source is part of the content
    groups = ["b1/EUR/2026-01", "b1/EUR/2026-02"]
    assert _sources(by_run.store) == [(g, run.id, None) for g in groups]
    assert _sources(by_file.store) == [(g, None, "the operator's own TRAK") for g in groups]
    # The same batch id again with the other source is other content; with its own, it exists.
    with pytest.raises(ConflictError, match="batch b1 was already accrued with other content"):
        _accrue(by_run, ScoreSource.external("the operator's own TRAK"), _scores(by_run))
    assert _accrue(by_run, ScoreSource.run(run.id)).status == "exists"


def test_a_run_per_payee_pays_under_the_agreement_whose_credit_shares_made_it(store: Store) -> None:
    w = _world(store)
    payees = {
        "o1": {f"person:{w.alice}": 2.0, f"name:{w.bob}": 1.0},
        "o2": {f"person:{w.alice}": 0.0, f"name:{w.bob}": 1.0},
    }
    other_terms = record_scores_run(store, w.manifest, payees, per="payee", payee_agreement="test-2026@2")
    before = row_counts(store)
    outs = _outputs()[:2]

    def accrue(run_id: str) -> Any:
        return accrue_scored(
            store, outs, None, source=ScoreSource.run(run_id), per=None, agreement_id="test-2026", batch_id="p1"
        )

    with pytest.raises(ManifestError, match="by the credit shares of agreement test-2026@2, and this batch accrues"):
        accrue(other_terms.id)
    assert row_counts(store) == before
    run = record_scores_run(store, w.manifest, payees, per="payee", payee_agreement="test-2026@1")
    summary = accrue(run.id)
    assert summary.status == "created" and summary.lines == 3  # o1: alice and bob; o2: bob (alice scored 0)


def test_bad_sources_are_refused_in_one_line_and_nothing_is_written(store: Store) -> None:
    w = _world(store)
    run = record_scores_run(store, w.manifest, _scores(w))
    before = row_counts(store)
    with pytest.raises(ValidationError, match="from a recorded attribution run or marked external with a reason"):
        ScoreSource()
    with pytest.raises(ValidationError, match="give one"):
        ScoreSource(run_id=run.id, external_reason="both")
    for reason in ("", " x", "line\nbreak", "x" * 501):
        with pytest.raises(ValidationError, match="the reason for external scores must be 1..500 printable"):
            ScoreSource.external(reason)
    with pytest.raises(ValidationError, match=f"attribution run {run.id} brings its own scores"):
        _accrue(w, ScoreSource.run(run.id), _scores(w))
    with pytest.raises(ValidationError, match="external scores need their values"):
        _accrue(w, ScoreSource.external("mine"))
    (store.data_dir / run.scores_path).write_bytes(b"PAR1 forged")
    with pytest.raises(EvidenceError, match=f"the scores file of attribution run {run.id} .* is unreadable"):
        _accrue(w, ScoreSource.run(run.id))
    assert row_counts(store) == before
