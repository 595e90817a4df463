"""A guild's escrow policy reaches its members' unclaimed money: the longer period wins, the guild's fund
is the destination, and what is published and moved says which term applied. Both backends."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Connection

from endcredits.consent.guilds import load_guild_terms
from endcredits.errors import CredentialError
from endcredits.ledger.accrue import accrue
from endcredits.ledger.expiry import escrow_schedule, expire_escrow
from endcredits.ledger.guilds import guild_unclaimed, guild_view
from endcredits.ledger.records import balance_totals
from endcredits.ledger.verify import verify
from endcredits.registry.identity.trusted import distrust_issuer, trust_issuer
from endcredits.royalties import Agreement, parse_agreement
from endcredits.store.engine import Store
from helpers_money import EXTERNAL, World, agreement_text, balances, guild_member, on_time, people

GUILD = "did:web:guild.example"
FUND = "actors-fund"


def terms(period_days: int) -> Agreement:
    line = f'escrow_period_days = {period_days}\nescrow_expiry_fund = "{FUND}"'
    return parse_agreement(agreement_text(pool_rate="0.5").replace("escrow_period_days = 1095", line))


def accrue_on(
    monkeypatch: pytest.MonkeyPatch, w: World, day: str, batch: str, ag: Agreement, scores: dict[str, float]
) -> None:
    """Accrue one output as if the batch were posted on ``day`` (the day its money is owed from)."""
    monkeypatch.setattr("endcredits.ledger.accrue.utc_now", lambda: f"{day}T09:00:00.000000Z")
    accrue(w.store, w.usage([(f"o-{batch}", 10**9 + 7, on_time(1), scores)], ag), ag, event_id=batch, source=EXTERNAL)
    monkeypatch.undo()


def conserved(store: Store) -> None:
    with store.read() as conn:
        (t,) = balance_totals(conn).values()
    assert t.conserved
    assert verify(store).ok


def guild_terms(period_days: int, fund: str | None) -> str:
    line = f'\nfund = "{fund}"' if fund else ""
    return f'effective_from = "2025-01-01T00:00:00Z"\n[escrow]\nperiod_days = {period_days}{line}\n'


def member(conn: Connection, person: int) -> None:
    guild_member(conn, person, GUILD)


@pytest.fixture
def world(store: Store, monkeypatch: pytest.MonkeyPatch) -> World:
    """dan (not yet verified, so his money waits in escrow) holds a credential from the guild."""
    w = World(store)
    with store.write() as conn:
        member(conn, w.dan)
        trust_issuer(conn, GUILD, note="the guild")
    accrue_on(monkeypatch, w, "2025-01-10", "b1", terms(30), {w.song: 0.6, w.film: 0.4})
    return w


def _held(w: World) -> dict[str, tuple[dt.date | None, str | None, str | None]]:
    with w.store.read() as conn:
        return {h.account: (h.due_on, h.fund, h.term) for h in escrow_schedule(conn)}


def test_the_longer_guild_period_and_its_fund_apply_to_members_only(world: World) -> None:
    w = world
    dan, bob = f"escrow:person:{w.dan}:EUR", f"escrow:name:{w.bob}:EUR"
    assert _held(w)[dan] == (dt.date(2025, 2, 9), FUND, "agreement test-2026")
    with w.store.write() as conn:
        load_guild_terms(conn, GUILD, guild_terms(90, "guild-fund"), "terms.toml")
    held = _held(w)
    assert held[dan] == (dt.date(2025, 4, 10), "guild-fund", f"guild terms of {GUILD} v1")
    assert held[bob] == (dt.date(2025, 2, 9), FUND, "agreement test-2026")  # not a member
    dan_owed = balances(w.store)[dan]
    early = expire_escrow(w.store, dt.date(2025, 3, 1), today=dt.date(2025, 6, 1))
    assert [m.account for m in early.moved] == [bob]
    late = expire_escrow(w.store, dt.date(2025, 4, 10), today=dt.date(2025, 6, 1))
    assert [(m.account, m.fund) for m in late.moved] == [(dan, "guild-fund")]
    assert balances(w.store)[f"fund:guild-fund/person:{w.dan}:EUR"] == dan_owed
    conserved(w.store)


def test_a_shorter_guild_period_keeps_the_agreement_s_but_sends_to_the_guild_fund(world: World) -> None:
    w = world
    dan = f"escrow:person:{w.dan}:EUR"
    with w.store.write() as conn:
        load_guild_terms(conn, GUILD, guild_terms(10, "guild-fund"), "terms.toml")
    assert _held(w)[dan] == (dt.date(2025, 2, 9), "guild-fund", f"guild terms of {GUILD} v1")
    with w.store.write() as conn:
        distrust_issuer(conn, GUILD)
    assert _held(w)[dan] == (dt.date(2025, 2, 9), FUND, "agreement test-2026")


def test_a_guild_period_without_a_fund_keeps_the_agreement_s_fund(world: World) -> None:
    w = world
    with w.store.write() as conn:
        load_guild_terms(conn, GUILD, guild_terms(60, None), "terms.toml")
    assert _held(w)[f"escrow:person:{w.dan}:EUR"] == (dt.date(2025, 3, 11), FUND, f"guild terms of {GUILD} v1")


def test_a_guild_sees_only_its_members_aggregates_and_unclaimed_lines(world: World) -> None:
    w = world
    now = dt.datetime(2025, 2, 1, tzinfo=dt.UTC)
    with w.store.read() as conn:
        with pytest.raises(CredentialError, match="not on the operator's trust list"):
            guild_view(conn, "did:web:other.example", now)
        alone = guild_view(conn, GUILD, now)
        unclaimed = guild_unclaimed(conn, GUILD)
    assert alone.members == 1 and alone.escrow_microunits is None  # one member's sum would be his own
    assert [r.name for r in unclaimed] == ["dan"]  # bob's name is not a member's
    carol = people(w.store, "carol")[0]
    with w.store.write() as conn:
        member(conn, w.alice)
        member(conn, carol)
    with w.store.read() as conn:
        view = guild_view(conn, GUILD, now)
    owed = balances(w.store)
    assert view.members == 3
    assert view.escrow_microunits == {"EUR": owed[f"escrow:person:{w.dan}:EUR"]}
    assert view.payable_microunits == {"EUR": owed[f"payable:person:{w.alice}:EUR"]}
    assert view.accrued_microunits == {
        "EUR": owed[f"escrow:person:{w.dan}:EUR"] + owed[f"payable:person:{w.alice}:EUR"]
    }
    assert "dan" not in str(view.to_json()) and "alice" not in str(view.to_json())


def test_a_statement_says_which_term_set_the_escrow_deadline(world: World) -> None:
    from endcredits.payouts.statements import build_statement

    w = world
    before = build_statement(w.store, w.dan, "2026-01", "EUR").escrow
    assert [(e["due_on"], e["fund"], e["deadline_set_by"]) for e in before] == [
        ("2025-02-09", FUND, "agreement test-2026")
    ]
    with w.store.write() as conn:
        load_guild_terms(conn, GUILD, guild_terms(90, "guild-fund"), "terms.toml")
    st = build_statement(w.store, w.dan, "2026-01", "EUR")
    (held,) = st.escrow
    assert (held["due_on"], held["fund"], held["deadline_set_by"]) == (
        "2025-04-10",
        "guild-fund",
        f"guild terms of {GUILD} v1",
    )
    assert (
        held["amount_microunits"] == balances(w.store)[f"escrow:person:{w.dan}:EUR"] and held["credited_as"] == "(you)"
    )
    assert '"deadline_set_by": "guild terms of' in st.to_json()
    assert build_statement(w.store, w.alice, "2026-01", "EUR").escrow == []  # verified: nothing waits
