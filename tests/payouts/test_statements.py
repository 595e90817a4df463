"""Statements on both backends: every line behind every microunit, reconciling exactly with the ledger,
before and after an escrow claim, in CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from endcredits.errors import ValidationError
from endcredits.ledger.accrue import accrue
from endcredits.ledger.escrow import claim_escrow
from endcredits.limits import SUBUNITS_PER_MICROUNIT
from endcredits.payouts.statements import STATEMENT_COLUMNS, Statement, build_statement
from endcredits.registry.records import claim_name
from endcredits.store.engine import Store
from endcredits.store.schema import agreements
from helpers_money import EXTERNAL, World, agreement, balances, on_time, people, register_model, usage

AG = agreement(pool_rate="0.3")


def _accrue_month(w: World, month: int, outputs: int) -> None:
    outs = []
    for i in range(outputs):
        scores = {w.song: 1.0 + i % 3, w.film: 0.5 + (i % 2), w.orphan: 0.1}
        outs.append((f"o{month}-{i}", 1_000_003 * (i + 1) + 7 * month, on_time(month, 1 + i % 27), scores))
    accrue(w.store, w.usage(outs, AG), AG, event_id=f"b{month}", source=EXTERNAL)


def _check(st: Statement) -> None:
    assert st.reconciles()
    total = sum(line["amount_microunits"] * SUBUNITS_PER_MICROUNIT + line["amount_subunits"] for line in st.lines)
    assert total == st.lines_subunits_total
    assert st.carried_in_subunits + total == st.accrued_microunits * SUBUNITS_PER_MICROUNIT + st.carried_out_subunits
    assert st.accrued_microunits == st.ledger_accrued_microunits
    rows = list(csv.DictReader(io.StringIO(st.to_csv())))
    assert len(rows) == len(st.lines)
    assert st.to_csv().splitlines()[0].split(",") == list(STATEMENT_COLUMNS)
    assert sum(int(r["amount_microunits"]) * SUBUNITS_PER_MICROUNIT + int(r["amount_subunits"]) for r in rows) == total
    data = json.loads(st.to_json())
    assert data["lines"] == st.lines
    assert data["reconciles"] is True and data["accrued_microunits"] == st.accrued_microunits


@pytest.fixture
def world(store: Store) -> World:
    w = World(store)
    _accrue_month(w, 1, 7)
    _accrue_month(w, 2, 5)
    return w


def test_statements_reconcile_with_the_ledger_every_month(world: World) -> None:
    jan = build_statement(world.store, world.alice, "2026-01", "EUR")
    feb = build_statement(world.store, world.alice, "2026-02", "EUR")
    for st in (jan, feb):
        _check(st)
        assert st.lines and {line["credited_as"] for line in st.lines} == {"(you)"}
        assert {line["role"] for line in st.lines} == {"endcredits:composer", "endcredits:rights_holder"}
        assert all(line["source_title"] == "A Song" for line in st.lines)
    assert len(jan.lines) == 7 * 2 and len(feb.lines) == 5 * 2  # composer and rights holder, per output
    assert jan.carried_in_subunits == 0 and feb.carried_in_subunits == jan.carried_out_subunits
    assert balances(world.store)[f"payable:person:{world.alice}:EUR"] == jan.accrued_microunits + feb.accrued_microunits
    # An unverified person's statement reconciles against their escrow account.
    dan = build_statement(world.store, world.dan, "2026-02", "EUR")
    _check(dan)
    assert {line["account"] for line in dan.lines} == {f"escrow:person:{world.dan}:EUR"}
    # A month without accruals is an empty statement that still reconciles.
    empty = build_statement(world.store, world.alice, "2026-03", "EUR")
    assert empty.lines == [] and empty.accrued_microunits == 0 and empty.reconciles()
    assert empty.carried_in_subunits == empty.carried_out_subunits
    for period in ("2026-1", "2026-13", "9999-01", "2026-00"):
        with pytest.raises(ValidationError, match=f"period '{period}' must be YYYY-MM, a month 01..12 of a year"):
            build_statement(world.store, world.alice, period, "EUR")


def test_statements_reconcile_after_an_escrow_claim(world: World) -> None:
    store = world.store
    (bob,) = people(store, "bob-the-performer")
    with store.write() as conn:
        claim_name(conn, world.bob, bob)
    claimed = claim_escrow(store, bob)
    assert claimed.moved_microunits["EUR"] > 0
    _accrue_month(world, 3, 4)
    months = [build_statement(store, bob, f"2026-0{m}", "EUR") for m in (1, 2, 3)]
    for st in months:
        _check(st)
        assert {line["credited_as"] for line in st.lines} == {"Bob Credited"}
    assert {line["account"] for line in months[0].lines} == {f"escrow:name:{world.bob}:EUR"}
    assert {line["account"] for line in months[2].lines} == {f"payable:person:{bob}:EUR"}
    # Everything the statements say accrued is what the person now holds: the claim moved the escrowed part.
    assert sum(st.accrued_microunits for st in months) == balances(store)[f"payable:person:{bob}:EUR"]
    assert claimed.moved_microunits["EUR"] == months[0].accrued_microunits + months[1].accrued_microunits


def test_statements_reconcile_when_a_month_is_accrued_late(store: Store) -> None:
    a, b = people(store, "a", "b")
    register_model(store)
    ag = agreement(pool_rate="1")
    halves = [(f"person:{a}", 1), (f"person:{b}", 1)]  # half a microunit each per output
    accrue(store, usage([("feb", 1, on_time(2), halves)]), ag, event_id="feb-batch", source=EXTERNAL)
    accrue(store, usage([("jan-late", 1, on_time(1), halves)]), ag, event_id="jan-late-batch", source=EXTERNAL)
    statements = [build_statement(store, a, p, "EUR") for p in ("2026-01", "2026-02")]
    for st in statements:
        _check(st)
    assert sum(st.accrued_microunits for st in statements) == balances(store).get(f"payable:person:{a}:EUR", 0)


def test_a_statement_explains_each_output_by_the_works_its_whole_pool_went_to(world: World) -> None:
    st = build_statement(world.store, world.alice, "2026-01", "EUR")
    outputs = {line["output_id"] for line in st.lines}
    assert set(st.outputs) == outputs
    for e in st.outputs.values():
        works = [w["work_id"] for w in e["top_works"]]
        # Alice is paid through the song only, but the output's explanation shows every work it paid for.
        assert set(works) == {world.song, world.film, world.orphan}
        amounts = [int(w["amount_subunits"]) for w in e["top_works"]]
        assert amounts == sorted(amounts, reverse=True) and sum(amounts) == int(e["pool_subunits"])
        assert e["agreement"] in st.rules
        assert {w["title"] for w in e["top_works"]} == {"A Song", "A Film", "Nobody's"}
    # accrue keeps the agreement that split the money, so its rules are on every statement.
    rule = next(iter(st.rules.values()))
    assert "negative earns nothing" in rule and rule.startswith("30% of each output's revenue is its pool"), rule
    with world.store.write() as conn:
        conn.execute(agreements.delete())  # an agreement's text lost from the store is said, not guessed
    assert "not stored here" in next(iter(build_statement(world.store, world.alice, "2026-01", "EUR").rules.values()))
    data = json.loads(st.to_json())
    assert data["outputs"] == st.outputs and data["rules"] == st.rules
    rows = list(csv.DictReader(io.StringIO(st.to_csv())))
    assert all("A Song" in r["output_top_works"] for r in rows)


def test_every_statement_line_names_the_run_or_the_external_reason_behind_its_scores(store: Store) -> None:
    from endcredits.ledger.accrue import ScoreSource, accrue_scored
    from endcredits.royalties.records import save_agreement
    from endcredits.royalties.usage import OutputIn
    from helpers_money import record_scores_run

    w = World(store)
    with store.write() as conn:
        save_agreement(conn, AG.id, AG.version, AG.body, AG.body_sha256)
    scores = {"r1": {w.song: 2.0, w.film: 1.0}, "r2": {w.song: 1.0, w.film: 0.5}}
    run = record_scores_run(store, w.manifest, scores, method="tracin")
    outs = [OutputIn(o, "m", 10**8 * (i + 1), "EUR", on_time(4, i + 2)) for i, o in enumerate(scores)]
    kw: dict[str, Any] = {"agreement_id": AG.id}
    accrue_scored(store, outs, None, source=ScoreSource.run(run.id), per=None, batch_id="from-run", **kw)
    hand = [OutputIn("x1", "m", 10**8, "EUR", on_time(4, 20))]
    accrue_scored(store, hand, {"x1": {w.song: 1.0}}, source=ScoreSource.external("a licensee's own scores"),
                  per="work", batch_id="by-hand", **kw)  # fmt: skip
    st = build_statement(store, w.alice, "2026-04", "EUR")
    _check(st)
    by_output = {line["output_id"]: line for line in st.lines}
    assert set(by_output) == {"r1", "r2", "x1"}
    for oid in ("r1", "r2"):
        line = by_output[oid]
        assert (line["scores_run_id"], line["scores_method"], line["scores_external_reason"]) == (run.id, "tracin", "")
        assert st.outputs[oid]["scores"] == f"attribution run {run.id} (tracin)"
    x1 = by_output["x1"]
    assert (x1["scores_run_id"], x1["scores_method"], x1["scores_external_reason"]) == (
        "",
        "",
        "a licensee's own scores",
    )
    assert st.outputs["x1"]["scores"] == "external scores: a licensee's own scores"
    data = json.loads(st.to_json())
    assert list(data["score_sources"]) == [run.id]
    assert data["score_sources"][run.id]["checkpoint_sha256s"] == ["c" * 64]
    assert data["score_sources"][run.id]["merkle_root"] == w.manifest.merkle_root
    rows = {r["output_id"]: r for r in csv.DictReader(io.StringIO(st.to_csv()))}
    assert rows["r1"]["scores_run_id"] == run.id and rows["x1"]["scores_external_reason"] == "a licensee's own scores"


def test_a_statement_shows_the_latest_validity_of_the_model_behind_its_runs(store: Store) -> None:
    from endcredits.attribution.settings import AttributionSettings
    from endcredits.attribution.validity import ValidityReport
    from endcredits.attribution.validity_records import record_validity
    from endcredits.ledger.accrue import ScoreSource, accrue_scored
    from endcredits.royalties.records import save_agreement
    from endcredits.royalties.usage import OutputIn
    from helpers_money import record_scores_run

    w = World(store)
    with store.write() as conn:
        save_agreement(conn, AG.id, AG.version, AG.body, AG.body_sha256)
    run = record_scores_run(store, w.manifest, {"r1": {w.song: 2.0, w.film: 1.0}}, method="tracin")
    outs = [OutputIn("r1", "m", 10**8, "EUR", on_time(4, 2))]
    accrue_scored(store, outs, None, source=ScoreSource.run(run.id), per=None, batch_id="b", agreement_id=AG.id)
    assert build_statement(store, w.alice, "2026-04", "EUR").model_validity == {}  # never measured
    report = ValidityReport(0.2, 0.31, 0.6, 0.77, 0.8, subsets=32, seeds=3, outputs=5, works=3, lds_per_output=())
    with store.write() as conn:
        v = record_validity(
            conn,
            report,
            manifest=w.manifest,
            checkpoint_sha256="c" * 64,
            model_kind="charlm",
            train_function="ops:train",
            settings=AttributionSettings(),
            draw_seed=1,
        )
    data = json.loads(build_statement(store, w.alice, "2026-04", "EUR").to_json())
    assert list(data["model_validity"]) == ["m"] and data["model_validity"]["m"]["id"] == v.id
    assert data["model_validity"]["m"]["summary"] == (
        "LDS 0.31 against the mean of 3 retrainings per subset (noise ceiling 0.80); 32 subsets, 5 outputs"
    )
