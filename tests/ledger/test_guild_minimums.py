"""A guild's minimum role weights reach accrual, on both backends: a member credited in the role is weighted
by max(the agreement's weight, the guild's minimum), a non-member by the agreement's; the agreement's higher
weight wins over a lower minimum; the accrual keeps which term applied, statements name it on the member's
lines, verify passes (and catches a cited term no stored version sets), and every split is exact. A licence
floor's top-up and a training fee, split in the raised ratio, cite the guild term as well as the licence's."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import update

from endcredits.consent.guilds import load_guild_terms
from endcredits.consent.terms import LicenceTerm, add_terms
from endcredits.ledger.accrue import accrue
from endcredits.ledger.evidence import read_evidence
from endcredits.ledger.records import balance_totals
from endcredits.ledger.training_fees import owe_training_fees
from endcredits.ledger.verify import verify
from endcredits.limits import SUBUNITS_PER_MICROUNIT
from endcredits.manifest.build import build_manifest
from endcredits.manifest.records import ManifestRecord
from endcredits.payouts.statement_layout import outputs_page
from endcredits.payouts.statements import build_statement
from endcredits.registry.identity.trusted import distrust_issuer, trust_issuer
from endcredits.registry.records import CreditIn, WorkIn, add_credits, add_person, add_works
from endcredits.royalties import Agreement, parse_agreement
from endcredits.royalties.usage import OutputIn, build_usage, load_credit_graph
from endcredits.royalties.usage_columns import UsageColumns, build_usage_columns
from endcredits.store.engine import Store
from endcredits.store.schema import guild_minimums
from helpers_money import EXTERNAL, ROLES, World, agreement_text, evidence_files, guild_member, on_time

GUILD = "did:web:guild.example"
PERFORMER = "endcredits:performer"
REVENUE = 1_000_000_000  # pool 0.3 of it: 300_000_000 microunits, which quarters exactly
TERM = f"guild minimum weight {PERFORMER}=3 (guild terms of {GUILD} v1)"


def _agreement(performer: int = 1) -> Agreement:
    return parse_agreement(agreement_text(role_weights={r: performer if r == PERFORMER else 1 for r in ROLES}))


class Show:
    """``World`` plus ``show``: dan (a guild member) and erin (not one) both credited as performers, weight 1."""

    def __init__(self, store: Store, minimum: int | None = 3) -> None:
        self.w = World(store)
        with store.write() as conn:
            self.erin = add_person(conn, "erin")
            (self.show,) = add_works(conn, [WorkIn(b"show bytes", "A Show", "video")])
            add_credits(
                conn,
                [
                    CreditIn(self.show, f"person:{self.w.dan}", PERFORMER, 1),
                    CreditIn(self.show, f"person:{self.erin}", PERFORMER, 1),
                ],
            )
            guild_member(conn, self.w.dan, GUILD)
            trust_issuer(conn, GUILD, note="the guild")
            if minimum is not None:
                body = f'effective_from = "2025-01-01T00:00:00Z"\n[role_weights_min]\n"{PERFORMER}" = {minimum}\n'
                load_guild_terms(conn, GUILD, body, "guild-terms.toml")
        self.w.manifest = _rebuild_manifest(store)

    def accrue(self, ag: Agreement, batch: str = "b1") -> None:
        usage = self.w.usage([(f"o-{batch}", REVENUE, on_time(3, 2), {self.show: 1.0})], ag)
        accrue(self.w.store, usage, ag, event_id=batch, source=EXTERNAL)

    def paid(self) -> dict[str, int]:
        """Per payee, what the evidence lines paid, in subunits."""
        out: dict[str, int] = {}
        for path in evidence_files(self.w.store):
            t = read_evidence(path)
            for payee, m, s in zip(*(t[c].to_pylist() for c in ("payee", "amount_microunits", "amount_subunits"))):
                out[payee] = out.get(payee, 0) + m * SUBUNITS_PER_MICROUNIT + s
        return out


def _rebuild_manifest(store: Store) -> ManifestRecord:
    return build_manifest(
        store, model_id="m", uses=["commercial"], as_of=dt.datetime(2026, 1, 2, tzinfo=dt.UTC), default="opt-out"
    )


def _conserved(store: Store) -> None:
    with store.read() as conn:
        (t,) = balance_totals(conn).values()
    assert t.conserved
    report = verify(store)
    assert report.ok, report.problems


def test_a_member_is_weighted_by_the_guild_minimum_and_a_non_member_is_not(store: Store) -> None:
    s = Show(store)
    s.accrue(_agreement())
    paid = s.paid()
    pool = REVENUE * 3 // 10
    dan, erin = f"person:{s.w.dan}", f"person:{s.erin}"
    assert paid[dan] == pool * 3 // 4 * SUBUNITS_PER_MICROUNIT  # 3 : 1, exactly
    assert paid[erin] == pool // 4 * SUBUNITS_PER_MICROUNIT
    assert sum(paid.values()) == pool * SUBUNITS_PER_MICROUNIT
    with store.read() as conn:
        rows = conn.execute(guild_minimums.select()).all()
    assert [(r.payee, r.source_work, r.role, r.issuer, r.terms_version, r.weight_min, r.agreement_weight)
            for r in rows] == [(dan, s.show, PERFORMER, GUILD, 1, 3, 1)]  # fmt: skip
    _conserved(store)


def test_the_agreement_s_higher_weight_wins_over_a_lower_guild_minimum(store: Store) -> None:
    s = Show(store)
    s.accrue(_agreement(performer=5))
    paid = s.paid()
    assert paid[f"person:{s.w.dan}"] == paid[f"person:{s.erin}"]
    with store.read() as conn:
        assert conn.execute(guild_minimums.select()).all() == []
    st = build_statement(store, s.w.dan, "2026-03", "EUR")
    assert st.lines and all(line["guild_term"] == "" for line in st.lines)
    _conserved(store)


def test_an_untrusted_guild_s_minimum_reaches_nobody(store: Store) -> None:
    s = Show(store)
    with store.write() as conn:
        distrust_issuer(conn, GUILD)
        graph = load_credit_graph(conn, [s.show])
    assert all(c.guild_minimum is None for c in graph.credits[s.show])
    s.accrue(_agreement())
    paid = s.paid()
    assert paid[f"person:{s.w.dan}"] == paid[f"person:{s.erin}"]


def test_statements_name_the_term_on_the_member_s_lines_and_reconcile(store: Store) -> None:
    s = Show(store)
    s.accrue(_agreement())
    mine = build_statement(store, s.w.dan, "2026-03", "EUR")
    assert mine.reconciles()
    assert mine.lines and {line["guild_term"] for line in mine.lines} == {TERM}
    header, first = mine.to_csv().splitlines()[:2]
    assert "guild_term" in header.split(",") and TERM in first
    assert '"guild_term": "' + TERM in mine.to_json()
    page = outputs_page(mine, 1, 10)
    assert [part.guild_terms for o in page.outputs for part in o.works] == [(TERM,)]
    theirs = build_statement(store, s.erin, "2026-03", "EUR")
    assert theirs.reconciles() and {line["guild_term"] for line in theirs.lines} == {""}


def test_a_new_version_applies_to_later_accruals_and_each_statement_line_cites_its_own(store: Store) -> None:
    s = Show(store)
    s.accrue(_agreement(), "b1")
    with store.write() as conn:
        body = f'effective_from = "2025-06-01T00:00:00Z"\n[role_weights_min]\n"{PERFORMER}" = 7\n'
        load_guild_terms(conn, GUILD, body, "guild-terms-v2.toml")
    s.accrue(_agreement(), "b2")
    st = build_statement(store, s.w.dan, "2026-03", "EUR")
    assert st.reconciles()
    cited = {line["output_id"]: line["guild_term"] for line in st.lines}
    assert cited == {"o-b1": TERM, "o-b2": f"guild minimum weight {PERFORMER}=7 (guild terms of {GUILD} v2)"}
    _conserved(store)


def test_verify_reports_a_cited_minimum_no_stored_terms_set(store: Store) -> None:
    s = Show(store)
    s.accrue(_agreement())
    with store.write() as conn:
        conn.execute(update(guild_minimums).values(weight_min=4))
    problems = verify(store).problems
    assert any("which no stored version of those terms sets" in p for p in problems), problems


def test_without_guild_terms_nothing_is_raised_or_recorded(store: Store) -> None:
    s = Show(store, minimum=None)
    s.accrue(_agreement())
    paid = s.paid()
    assert paid[f"person:{s.w.dan}"] == paid[f"person:{s.erin}"]
    with store.read() as conn:
        assert conn.execute(guild_minimums.select()).all() == []
    _conserved(store)


def test_the_columnar_builder_applies_the_same_minimum(store: Store) -> None:
    s = Show(store)
    ag = _agreement()
    outs = [OutputIn("o-1", "m", REVENUE, "EUR", on_time(3, 2))]
    scores = {"o-1": {s.show: 1.0, s.w.song: 0.5}}
    with store.read() as conn:
        rows = build_usage(conn, outs, scores, ag, s.w.manifest)
        cols = build_usage_columns(conn, UsageColumns.of_scores(outs, scores), ag, s.w.manifest, per="work")
    assert rows.content_sha256() == cols.content_sha256()
    applied = {(f"person:{s.w.dan}", s.show, PERFORMER)}
    assert set(rows.guild_minimums) == set(cols.guild_minimums) == applied
    dan_line = rows.payees.index(f"person:{s.w.dan}")
    erin_line = rows.payees.index(f"person:{s.erin}")
    weight = dict(zip(rows.payee_codes.tolist(), rows.weights.tolist()))
    assert weight[dan_line] == 3 * weight[erin_line]


def test_a_floor_top_up_and_a_training_fee_cite_the_guild_term_their_split_used(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The show carries a price per output (a floor far above a 0.0003 EUR pool) and a fee per training use;
    # dan's guild minimum (3 against the agreement's 1) raises his part of both, and his lines say so.
    monkeypatch.setattr("endcredits.ledger.training_fees.utc_now", lambda: "2026-03-05T10:00:00.000000Z")
    s = Show(store)
    floored = parse_agreement(
        agreement_text(role_weights={r: 1 for r in ROLES}).replace(
            "[role_weights]", 'licence_terms = ["output_floor"]\n[role_weights]'
        )
    )
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    priced = [
        LicenceTerm(s.show, kind, amount, "EUR", ("commercial",), "rsl license.xml", start, None, True)
        for kind, amount in (("use", 2_000_000), ("training", 40_000_000))
    ]
    with store.write() as conn:
        add_terms(conn, priced)
    usage = s.w.usage([("o-small", 1_000_003, on_time(3, 2), {s.show: 1.0})], floored)
    accrue(store, usage, floored, event_id="b1", source=EXTERNAL)
    fees = owe_training_fees(store, s.w.manifest.id, floored)
    assert fees.status == "created" and fees.total_microunits == 40_000_000
    dan, erin = (build_statement(store, p, "2026-03", "EUR") for p in (s.w.dan, s.erin))
    assert dan.reconciles() and erin.reconciles()
    priced_lines = [line for line in dan.lines if line["licence_term"]]
    assert {line["licence_term"].split(":")[0] for line in priced_lines} == {"use", "training"}
    assert {line["guild_term"] for line in priced_lines} == {TERM}  # the top-up and the fee: the raised split
    assert {line["guild_term"] for line in erin.lines} == {""}  # no member: the agreement's weight applied
    fee_part = [sum(line["amount_microunits"] for line in st.lines if line["output_id"].startswith("training:"))
                for st in (dan, erin)]  # fmt: skip
    assert fee_part == [30_000_000, 10_000_000]  # 3 : 1, exactly
    report = verify(store)
    assert report.ok and report.checked["guild_minimums"] == 2, report.problems  # the accrual's and the fee's
