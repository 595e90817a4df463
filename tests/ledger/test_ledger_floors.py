"""Licence floors on both backends: an agreement with ``licence_terms = ["output_floor"]`` raises a work's
share of an output to its ``use`` term's amount, the operator paying the difference; nobody else's share
changes, every microunit is conserved, verify re-derives the top-ups, statements cite the term, and a term
in another currency is refused with nothing written."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy import delete

from endcredits.consent.terms import LicenceTerm, add_terms
from endcredits.errors import ValidationError
from endcredits.ledger.accrue import accrue
from endcredits.ledger.verify import verify
from endcredits.limits import SUBUNITS_PER_MICROUNIT
from endcredits.payouts.statements import build_statement
from endcredits.royalties import Agreement, parse_agreement
from endcredits.store.engine import Store
from endcredits.store.schema import licence_floors
from helpers_money import EXTERNAL, World, agreement_text, balances, evidence_files, on_time, row_counts

FLOOR_EUR = 2_000_000  # 0.02 EUR per output
PLAIN = parse_agreement(agreement_text(pool_rate="0.3"))
FLOORED = parse_agreement(
    agreement_text(pool_rate="0.3", version=2).replace(
        "[role_weights]", 'licence_terms = ["output_floor"]\n[role_weights]'
    )
)


def _term(
    work_id: str, *, currency: str = "EUR", uses: tuple[str, ...] = ("commercial",), month: int = 1
) -> LicenceTerm:
    return LicenceTerm(
        work_id=work_id,
        payment_type="use",
        amount_microunits=FLOOR_EUR,
        currency=currency,
        uses=uses,
        source="rsl license.xml (via robots.txt License: https://example.org/license.xml)",
        valid_from=dt.datetime(2026, month, 1, tzinfo=dt.UTC),
        valid_until=None,
        perpetual=True,
    )


def _outputs(w: World) -> list[tuple[str, int, str, dict[str, float]]]:
    # o-small: the song's share of a 0.0003 EUR pool is far below the floor; o-big: a 3 EUR pool pays it more.
    return [
        ("o-small", 1_000_003, on_time(3, 2), {w.song: 1.0, w.film: 2.0, w.orphan: 0.5}),
        ("o-big", 1_000_000_007, on_time(3, 3), {w.song: 1.0, w.film: 2.0}),
    ]


def _accrue(w: World, ag: Agreement) -> None:
    accrue(w.store, w.usage(_outputs(w), ag), ag, event_id="b1", source=EXTERNAL)


def _song_shares(store: Store, song: str) -> dict[str, int]:
    """Per output, the song's share in subunits: its evidence lines (the pool) plus its floor lines."""
    from endcredits.ledger.evidence import read_evidence
    from endcredits.ledger.floors import floor_lines_of

    out: dict[str, int] = {}
    for path in evidence_files(store):
        t = read_evidence(path)
        columns = ("output_id", "attributed_work", "amount_microunits", "amount_subunits")
        for oid, work, m, s in zip(*(t[c].to_pylist() for c in columns)):
            if work == song:
                out[oid] = out.get(oid, 0) + m * SUBUNITS_PER_MICROUNIT + s
    with store.read() as conn:
        for x in floor_lines_of(conn, ["b1/EUR/2026-03"]):
            out[x.output_id] += x.amount_microunits * SUBUNITS_PER_MICROUNIT
    return out


def test_a_use_term_raises_the_work_to_its_floor_paid_by_the_operator(
    store: Store, store_factory: Callable[[], Store]
) -> None:
    w = World(store)
    with store.write() as conn:
        (term_id,) = add_terms(conn, [_term(w.song)])
    _accrue(w, FLOORED)
    shares = _song_shares(store, w.song)
    # At least the floor, and less than one microunit above it, where the pool paid less; untouched where more.
    assert FLOOR_EUR * SUBUNITS_PER_MICROUNIT <= shares["o-small"] < (FLOOR_EUR + 1) * SUBUNITS_PER_MICROUNIT
    assert shares["o-big"] > FLOOR_EUR * SUBUNITS_PER_MICROUNIT
    with store.read() as conn:
        rows = conn.execute(licence_floors.select()).all()
    assert rows and {r.output_id for r in rows} == {"o-small"} and {r.term_id for r in rows} == {term_id}
    floored = sum(int(r.amount_microunits) for r in rows)
    # The same batch without the floor, on a fresh store: every other payee is paid exactly the same, and the
    # song's people exactly the top-up more; the pool account funded the pool and the top-up.
    other = World(store_factory())
    _accrue(other, PLAIN)
    with_floor, without = balances(store), balances(other.store)
    song_people = {f"payable:person:{w.alice}:EUR", f"escrow:name:{w.bob}:EUR"}
    for key in set(with_floor) | set(without):
        if key.startswith(("pool:", "suspense:")) or key in song_people:
            continue
        assert with_floor.get(key) == without.get(key), key
    assert sum(with_floor[k] - without[k] for k in song_people) == floored
    assert with_floor["pool:EUR"] == without["pool:EUR"] - floored
    assert with_floor["suspense:EUR"] == without["suspense:EUR"]
    assert sum(with_floor.values()) == 0
    report = verify(store)
    assert report.ok, report.problems


def test_statements_cite_the_term_and_still_reconcile(store: Store) -> None:
    w = World(store)
    with store.write() as conn:
        (term_id,) = add_terms(conn, [_term(w.song)])
    _accrue(w, FLOORED)
    st = build_statement(store, w.alice, "2026-03", "EUR")
    assert st.reconciles()
    cited = [line for line in st.lines if line["licence_term"]]
    assert cited and {line["output_id"] for line in cited} == {"o-small"}
    assert all(line["amount_subunits"] == 0 and line["amount_microunits"] > 0 for line in cited)
    assert cited[0]["licence_term"] == f"use: at least 0.02 EUR per output (licence term {term_id})"
    assert cited[0]["licence_source"].startswith("rsl license.xml")
    assert "licence_term" in st.to_csv().splitlines()[0]
    from endcredits.payouts.statement_layout import outputs_page

    page = outputs_page(st, 1, 10)
    small = next(o for o in page.outputs if o.output_id == "o-small")
    assert any(part.licence_terms for part in small.works)


def test_verify_reports_a_floor_line_that_was_removed(store: Store) -> None:
    w = World(store)
    with store.write() as conn:
        add_terms(conn, [_term(w.song)])
    _accrue(w, FLOORED)
    with store.write() as conn:
        conn.execute(delete(licence_floors))
    assert any("legs differ from what its evidence posts" in p for p in verify(store).problems)


def test_terms_out_of_force_or_for_other_uses_raise_nothing(store: Store) -> None:
    w = World(store)
    with store.write() as conn:
        add_terms(conn, [_term(w.song, month=4), _term(w.film, uses=("ai_input",))])
    _accrue(w, FLOORED)
    with store.read() as conn:
        assert conn.execute(licence_floors.select()).all() == []
    assert verify(store).ok


def test_a_term_in_another_currency_is_refused_and_nothing_is_written(store: Store) -> None:
    w = World(store)
    with store.write() as conn:
        (term_id,) = add_terms(conn, [_term(w.song, currency="USD")])
    before, files = row_counts(store), evidence_files(store)
    with pytest.raises(ValidationError, match=f"licence term {term_id} on work .* asks USD and agreement .* pays EUR"):
        _accrue(w, FLOORED)
    assert row_counts(store) == before and evidence_files(store) == files
    _accrue(w, PLAIN)  # an agreement that applies no floors accrues as before
    assert verify(store).ok
