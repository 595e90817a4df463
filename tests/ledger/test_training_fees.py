"""Training fees on both backends: a licence term of payment type "training" makes a manifest's run owe its
amount once per covered work, split exactly over the work's payees as its residual is, posted from the pool in
one balanced transfer; a second call posts nothing; statements show each part citing the term and still
reconcile; verify passes and catches a fee row that was altered; a term in another currency is refused with
nothing written; terms out of force, for other uses, or of other payment types owe nothing. Recording a
training run under an agreement (``record_training``, ``manifest run record --agreement``) posts the fees in
the same transaction, once per manifest; a refused fee records no run."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from endcredits.cli.app import app
from endcredits.consent.terms import LicenceTerm, add_terms
from endcredits.errors import ValidationError
from endcredits.ledger.records import balance_totals
from endcredits.ledger.training_fees import TrainingFees, owe_training_fees, record_training
from endcredits.ledger.verify import verify
from endcredits.manifest.records import training_runs_list
from endcredits.money import allocate
from endcredits.payouts.statements import build_statement
from endcredits.royalties import Agreement, parse_agreement, work_shares
from endcredits.royalties.records import save_agreement
from endcredits.royalties.usage import load_credit_graph
from endcredits.store.engine import Store
from endcredits.store.schema import training_fees, works
from helpers_money import World, agreement_text, balances, row_counts

FEE_EUR = 50_000_000  # 0.5 EUR per training use
AG = parse_agreement(agreement_text(pool_rate="0.3"))
NOW = "2026-04-03T10:00:00.000000Z"


def _term(
    work_id: str,
    *,
    payment_type: str = "training",
    currency: str = "EUR",
    start: dt.datetime = dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
    uses: tuple[str, ...] = ("commercial",),
) -> LicenceTerm:
    return LicenceTerm(
        work_id=work_id,
        payment_type=payment_type,
        amount_microunits=FEE_EUR,
        currency=currency,
        uses=uses,
        source="rsl license.xml",
        valid_from=start,
        valid_until=None,
        perpetual=True,
    )


@pytest.fixture(autouse=True)
def _posted_in_april(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("endcredits.ledger.training_fees.utc_now", lambda: NOW)


def test_a_training_term_is_owed_once_split_as_the_work_s_residual(store: Store) -> None:
    w = World(store)
    with store.write() as conn:
        (term_id,) = add_terms(conn, [_term(w.song)])
        add_terms(conn, [_term(w.film, payment_type="use")])  # a price per output: no training fee
        shares = work_shares(w.song, load_credit_graph(conn, [w.song]), AG, {})
    got = owe_training_fees(store, w.manifest.id, AG)
    assert (got.status, got.total_microunits, got.works) == ("created", FEE_EUR, 1)
    with store.read() as conn:
        rows = conn.execute(training_fees.select()).all()
    assert {r.term_id for r in rows} == {term_id} and sum(int(r.amount_microunits) for r in rows) == FEE_EUR
    want = allocate(FEE_EUR, {(s.payee, s.source_work, s.role): s.share for s in shares})
    assert {(r.payee, r.source_work, r.role): int(r.amount_microunits) for r in rows} == want
    owed = balances(store)
    assert owed["pool:EUR"] == -FEE_EUR
    assert owed[f"payable:person:{w.alice}:EUR"] + owed[f"escrow:name:{w.bob}:EUR"] == FEE_EUR
    again = owe_training_fees(store, w.manifest.id, AG)
    assert (again.status, again.total_microunits) == ("exists", FEE_EUR)
    assert balances(store) == owed
    with store.read() as conn:
        (t,) = balance_totals(conn).values()
    assert t.conserved
    report = verify(store)
    assert report.ok and report.checked["training_fees"] == 1, report.problems


def test_statements_show_the_fee_citing_its_term_and_reconcile(store: Store) -> None:
    w = World(store)
    with store.write() as conn:
        (term_id,) = add_terms(conn, [_term(w.song)])
    owe_training_fees(store, w.manifest.id, AG)
    st = build_statement(store, w.alice, "2026-04", "EUR")
    assert st.reconciles() and st.accrued_microunits > 0
    assert {line["output_id"] for line in st.lines} == {f"training:{w.manifest.id}"}
    with store.read() as conn:
        title = conn.execute(select(works.c.title).where(works.c.id == w.song)).scalar_one()
    assert title and {line["attributed_title"] for line in st.lines} == {title}
    cited = {line["licence_term"] for line in st.lines}
    assert cited == {f"training: 0.50 EUR per training use, manifest {w.manifest.id} (licence term {term_id})"}
    assert sum(line["amount_microunits"] for line in st.lines) == st.accrued_microunits
    assert build_statement(store, w.alice, "2026-03", "EUR").lines == []


def test_verify_reports_a_fee_row_that_no_longer_matches_its_transfer(store: Store) -> None:
    w = World(store)
    with store.write() as conn:
        add_terms(conn, [_term(w.song)])
    owe_training_fees(store, w.manifest.id, AG)
    with store.write() as conn:
        conn.execute(update(training_fees).values(amount_microunits=1))
    assert any("its legs differ from what its fee rows add up to" in p for p in verify(store).problems)


def test_a_term_in_another_currency_is_refused_and_nothing_is_written(store: Store) -> None:
    w = World(store)
    with store.write() as conn:
        (term_id,) = add_terms(conn, [_term(w.song, currency="USD")])
    before = row_counts(store)
    with pytest.raises(ValidationError, match=f"licence term {term_id} on work .* asks USD per training use"):
        owe_training_fees(store, w.manifest.id, AG)
    assert row_counts(store) == before


def test_terms_out_of_force_or_for_other_uses_owe_nothing(store: Store) -> None:
    w = World(store)
    with store.write() as conn:
        later = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)  # after the manifest's as_of time
        add_terms(conn, [_term(w.song, start=later), _term(w.film, uses=("ai_input",))])
    before = row_counts(store)
    got = owe_training_fees(store, w.manifest.id, AG)
    assert (got.status, got.total_microunits) == ("none", 0)
    assert row_counts(store) == before


def test_a_guild_sees_its_members_training_fees_among_what_they_accrued(store: Store) -> None:
    from endcredits.ledger.guilds import guild_view
    from endcredits.registry.identity.trusted import trust_issuer
    from endcredits.registry.records import add_person
    from helpers_money import guild_member

    guild = "did:web:guild.example"
    w = World(store)
    with store.write() as conn:
        trust_issuer(conn, guild, note="the guild")
        for person in (w.alice, w.dan, add_person(conn, "third")):  # three members: sums are shown
            guild_member(conn, person, guild)
        add_terms(conn, [_term(w.song)])
    at = dt.datetime(2026, 4, 4, tzinfo=dt.UTC)
    with store.read() as conn:
        before = guild_view(conn, guild, at).accrued_microunits
    owe_training_fees(store, w.manifest.id, AG)
    alice_part = balances(store)[f"payable:person:{w.alice}:EUR"]
    with store.read() as conn:
        after = guild_view(conn, guild, at).accrued_microunits
    assert before == {} and after == {"EUR": alice_part} and 0 < alice_part < FEE_EUR  # bob's name is no member


RUN_AT = dt.datetime(2026, 4, 2, 9, tzinfo=dt.UTC)


def _record(store: Store, w: World, run_id: str, agreement: Agreement | None = AG) -> TrainingFees | None:
    _run, fees = record_training(
        store,
        run_id=run_id,
        manifest_id=w.manifest.id,
        checkpoint_sha256s=["ab" * 32],
        started_at=RUN_AT,
        finished_at=RUN_AT + dt.timedelta(hours=2),
        agreement=agreement,
    )
    return fees


def test_recording_a_training_run_under_an_agreement_posts_its_fees_once(store: Store) -> None:
    w = World(store)
    with store.write() as conn:
        add_terms(conn, [_term(w.song)])
    fees = _record(store, w, "run-1")
    assert fees is not None and (fees.status, fees.total_microunits, fees.works) == ("created", FEE_EUR, 1)
    owed = balances(store)
    assert owed["pool:EUR"] == -FEE_EUR
    # The same run again, and a second run of the same manifest: the manifest owes its fees once.
    for run_id in ("run-1", "run-2"):
        again = _record(store, w, run_id)
        assert again is not None and (again.status, again.event_id) == ("exists", fees.event_id)
    assert balances(store) == owed
    with store.read() as conn:
        assert [r.id for r in training_runs_list(conn, manifest_id=w.manifest.id)] == ["run-2", "run-1"]
    report = verify(store)
    assert report.ok and report.checked["training_fees"] == 1, report.problems


def test_a_run_recorded_without_an_agreement_owes_nothing_yet(store: Store) -> None:
    w = World(store)
    with store.write() as conn:
        add_terms(conn, [_term(w.song)])
    assert _record(store, w, "run-1", agreement=None) is None
    assert "pool:EUR" not in balances(store)
    assert owe_training_fees(store, w.manifest.id, AG).status == "created"  # posted later, by the command


def test_a_refused_fee_records_no_run_either(store: Store) -> None:
    w = World(store)
    with store.write() as conn:
        add_terms(conn, [_term(w.song, currency="USD")])
    before = row_counts(store)
    with pytest.raises(ValidationError, match="asks USD per training use"):
        _record(store, w, "run-1")
    assert row_counts(store) == before


def test_cli_records_a_run_and_posts_its_fees(store: Store, tmp_path: Path, db_url: str | None) -> None:
    w = World(store)
    with store.write() as conn:
        (term_id,) = add_terms(conn, [_term(w.song)])
        save_agreement(conn, AG.id, AG.version, AG.body, AG.body_sha256)
    where = ["--db", db_url] if db_url else ["--data", str(tmp_path / "data")]
    args = [*where, "manifest", "run", "record", "--run", "r1", "--manifest", w.manifest.id, "--checkpoint-sha256"]
    args += ["ab" * 32, "--started", "2026-04-02T09:00:00Z", "--finished", "2026-04-02T11:00:00Z"]
    runner = CliRunner()
    out = runner.invoke(app, [*args, "--agreement", AG.id, "--json"])
    assert out.exit_code == 0, out.output
    fees = json.loads(out.stdout)["training_fees"]
    assert (fees["status"], fees["total_microunits"], fees["lines"]) == ("created", FEE_EUR, 3)
    text = runner.invoke(app, [*args, "--agreement", AG.id])
    assert text.exit_code == 0 and "training fees: exists; 0.50 EUR for 1 works" in text.stdout
    st = build_statement(store, w.alice, "2026-04", "EUR")
    assert st.reconciles() and {line["licence_term"] for line in st.lines} == {
        f"training: 0.50 EUR per training use, manifest {w.manifest.id} (licence term {term_id})"
    }
