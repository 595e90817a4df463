"""Ids on both backends: one rule (limits.check_id) wherever an id enters, so a NUL, a newline or another
control character is refused before anything is written and never reaches a file or a statement CSV."""

from __future__ import annotations

import datetime as dt

import pytest

from endcredits.consent.rules import Grant
from endcredits.errors import ValidationError
from endcredits.ledger.accrue import accrue
from endcredits.manifest.records import add_model, record_training_run
from endcredits.payouts.statements import build_statement
from endcredits.registry.records import CreditIn, add_credits, add_lineage, link_works
from endcredits.royalties import parse_agreement
from endcredits.royalties.usage import OutputIn, build_usage
from endcredits.store.engine import Store
from helpers_money import EXTERNAL, World, agreement, agreement_text, evidence_files, on_time, row_counts, usage

BAD_IDS = ["o\x00", "o\n1", "o1\r", "\to1", "o\x7f", "o\u202e1", "o\u2028", " o1", "o1 ", "", "o" * 201]
"""NUL, newline, carriage return, tab, DEL, a right-to-left override, a line separator, edge spaces,
empty, too long."""


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_a_bad_output_id_is_refused_before_anything_is_written(store: Store, bad: str) -> None:
    w = World(store)
    ag = agreement()
    before = row_counts(store)
    pay_alice = [(f"person:{w.alice}", 1)]
    with pytest.raises(ValidationError, match=r"output id .* must be 1\.\.200 printable characters") as info:
        accrue(
            store,
            usage([("o0", 100, on_time(3), pay_alice), (bad, 100, on_time(3), pay_alice)]),
            ag,
            event_id="b1",
            source=EXTERNAL,
        )
    assert "\n" not in str(info.value)
    with store.read() as conn, pytest.raises(ValidationError, match="output id"):
        build_usage(conn, [OutputIn(bad, "m", 100, "EUR", on_time(3))], {bad: {w.song: 1.0}}, ag, w.manifest)
    assert row_counts(store) == before and evidence_files(store) == []

    # A good batch afterwards: its statement CSV holds no control character at all.
    accrue(store, w.usage([("o1", 10**9, on_time(3), {w.song: 1.0})], ag), ag, event_id="b1", source=EXTERNAL)
    text = build_statement(store, w.alice, "2026-03", "EUR").to_csv()
    assert "o1" in text and not any(ch in text for ch in "\x00\r\t\x7f\u202e\u2028")


@pytest.mark.parametrize("bad", ["b\x00", "b\n1", "b1\u202e"], ids=repr)
def test_a_bad_batch_or_model_id_is_refused(store: Store, bad: str) -> None:
    w = World(store)
    ag = agreement()
    before = row_counts(store)
    pay_alice = [(f"person:{w.alice}", 1)]
    with pytest.raises(ValidationError, match="batch event id"):
        accrue(store, usage([("o1", 100, on_time(3), pay_alice)]), ag, event_id=bad, source=EXTERNAL)
    with pytest.raises(ValidationError, match="model id"):
        accrue(store, usage([("o1", 100, on_time(3), pay_alice)], model_id=bad), ag, event_id="b1", source=EXTERNAL)
    with pytest.raises(ValidationError, match="payee"):
        accrue(
            store, usage([("o1", 100, on_time(3), [(f"person:{w.alice}{bad}", 1)])]), ag, event_id="b1", source=EXTERNAL
        )
    with store.write() as conn, pytest.raises(ValidationError, match="model id"):
        add_model(conn, bad, ["commercial"], "bad")
    with store.write() as conn, pytest.raises(ValidationError, match="training run id"):
        at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        record_training_run(
            conn, run_id=bad, manifest_id=w.manifest.id, checkpoint_sha256s=["0" * 64], started_at=at, finished_at=at
        )
    assert row_counts(store) == before and evidence_files(store) == []


@pytest.mark.parametrize("bad", ["w\x00", "w\n"], ids=repr)
def test_a_bad_work_id_is_refused_in_the_registry(store: Store, bad: str) -> None:
    """On PostgreSQL a NUL used to reach the driver and fail as a DataError (an HTTP 500)."""
    w = World(store)
    before = row_counts(store)
    for call in (
        lambda conn: add_credits(conn, [CreditIn(bad, f"person:{w.alice}", "endcredits:composer")]),
        lambda conn: add_lineage(conn, bad, w.song, None),
        lambda conn: link_works(conn, w.song, bad, method="manual", similarity_ppm=None, linked_by="operator"),
    ):
        with store.write() as conn, pytest.raises(ValidationError, match="work id"):
            call(conn)
    assert row_counts(store) == before


def test_bad_agreement_and_consent_ids_are_refused() -> None:
    with pytest.raises(ValidationError, match="agreement id"):
        parse_agreement(agreement_text(agreement_id="a\\u0000b"))
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(ValidationError, match=r"grant subject_id \(work\) 'w\\x00'"):
        Grant("work", "w\x00", "commercial", "allowed", at, None, True, "test")
