"""Guild terms on both backends: only a trusted issuer may load them, bad terms change nothing, and a
member inherits the guild's consent defaults in manifests, the more protective term winning."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner

from endcredits.cli import app
from endcredits.consent.guilds import guild_terms_in_force, load_guild_terms, parse_guild_terms
from endcredits.consent.records import add_grants
from endcredits.consent.rules import Grant
from endcredits.errors import ConflictError, CredentialError, ValidationError
from endcredits.manifest.build import build_manifest
from endcredits.registry.identity.trusted import distrust_issuer, trust_issuer
from endcredits.registry.records import CreditIn, WorkIn, add_credits, add_works
from endcredits.store.engine import Store, format_time
from endcredits.store.schema import credentials
from helpers_money import people, row_counts

UTC = dt.UTC
T0 = dt.datetime(2025, 1, 1, tzinfo=UTC)
LATER = dt.datetime(2026, 6, 1, tzinfo=UTC)
GUILD = "did:web:guild.example"

TERMS = """\
effective_from = "2026-01-01T00:00:00Z"

[consent]
ai_training = "notAllowed"
research = "allowed"

[escrow]
period_days = 1825
fund = "actors-fund"

[role_weights_min]
"endcredits:composer" = 5
"""


def member(conn: object, person: int, issuer: str = GUILD, n: int = 1) -> None:
    conn.execute(  # type: ignore[attr-defined]
        credentials.insert().values(
            person_id=person,
            credential_id=f"urn:uuid:{issuer}:{n}",
            issuer=issuer,
            subject=f"did:example:{person}",
            valid_until=format_time(dt.datetime(2030, 1, 1, tzinfo=UTC)),
            credential_json="{}",
            added_at=format_time(T0),
        )
    )


@pytest.fixture
def two_works(store: Store) -> tuple[str, str, int, int]:
    """A tune by a guild member and one by someone outside the guild."""
    inside, outside = people(store, "inside", "outside")
    with store.write() as conn:
        w1, w2 = add_works(
            conn,
            [
                WorkIn(b"tune one", "tune one", "text/plain", "https://x.example/1"),
                WorkIn(b"tune two", "tune two", "text/plain", "https://x.example/2"),
            ],
        )
        add_credits(conn, [CreditIn(w1, f"person:{inside}", "endcredits:composer")])
        add_credits(conn, [CreditIn(w2, f"person:{outside}", "endcredits:composer")])
        member(conn, inside)
    return w1, w2, inside, outside


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (TERMS.replace("ai_training", "ai_dreaming"), "unknown use 'ai_dreaming'"),
        (TERMS.replace("endcredits:composer", "endcredits:juggler"), "unknown role endcredits:juggler"),
        (TERMS.replace("= 5", "= -5"), "minimum weight for endcredits:composer must be an integer"),
        (TERMS.replace("= 5", '= "five"'), "minimum weight for endcredits:composer must be an integer"),
        (TERMS.replace("period_days = 1825", "period_days = -1"), "period_days must be an integer"),
        (TERMS.replace('"notAllowed"', '"maybe"'), 'say "allowed" or "notAllowed"'),
        (TERMS.replace("actors-fund", "Actors Fund"), "fund 'Actors Fund' must be"),
        (TERMS.replace("effective_from", "starts"), "unknown keys"),
        ('effective_from = "2026-01-01T00:00:00Z"\n', "set nothing"),
        (TERMS.replace("[consent]", "[consent"), "not valid TOML"),
    ],
)
def test_bad_terms_are_refused_in_one_line(body: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as err:
        parse_guild_terms(body, GUILD, "terms.toml")
    assert "\n" not in str(err.value)


def test_terms_from_an_untrusted_issuer_change_nothing(store: Store) -> None:
    before = row_counts(store)
    with pytest.raises(CredentialError, match=f"untrusted_issuer: issuer {GUILD} is not on the operator's trust"):
        with store.write() as conn:
            load_guild_terms(conn, GUILD, TERMS, "terms.toml")
    assert row_counts(store) == before


def test_versions_are_stored_once_and_escrow_is_never_shortened(store: Store) -> None:
    with store.write() as conn:
        assert trust_issuer(conn, GUILD, note="the actors' guild")
        v1, new = load_guild_terms(conn, GUILD, TERMS, "terms.toml")
        again, new_again = load_guild_terms(conn, GUILD, TERMS, "terms.toml")
    assert (v1.version, new, again.version, new_again) == (1, True, 1, False)
    assert v1.consent == (("ai_training", "notAllowed"), ("research", "allowed"))
    assert v1.role_weights_min == ((("endcredits", "composer"), 5),)
    before = row_counts(store)
    for body, error, message in [
        (TERMS.replace("1825", "365"), ConflictError, "would shorten the escrow period from 1825 days to 365"),
        (TERMS.replace("2026-01-01", "2025-06-01"), ValidationError, "is before version 1's"),
    ]:
        with pytest.raises(error, match=message), store.write() as conn:
            load_guild_terms(conn, GUILD, body, "terms-2.toml")
        assert row_counts(store) == before
    with store.write() as conn:
        v2, _ = load_guild_terms(conn, GUILD, TERMS.replace("1825", "3650"), "terms-2.toml")
        assert guild_terms_in_force(conn)[GUILD].version == 2 == v2.version
        distrust_issuer(conn, GUILD)
        assert guild_terms_in_force(conn) == {}


def _grant(person: int, use: str, decision: str) -> Grant:
    return Grant("person", str(person), use, decision, T0, None, True, "letter.pdf")  # type: ignore[arg-type]


def test_members_inherit_consent_defaults_and_the_more_protective_wins(
    store: Store, two_works: tuple[str, str, int, int]
) -> None:
    w1, w2, inside, _ = two_works
    with store.write() as conn:
        trust_issuer(conn, GUILD, note="the actors' guild")
        load_guild_terms(conn, GUILD, TERMS, "terms.toml")
    train = build_manifest(store, model_id="m1", uses=["ai_generative_training"], as_of=LATER, default="opt-out")
    assert train.included == (w2,)
    assert train.excluded == (
        (
            w1,
            f"notAllowed for ai_generative_training by guild terms of {GUILD} v1 for ai_training, "
            f"inherited by member {inside}",
        ),
    )
    research = build_manifest(store, model_id="m2", uses=["research"], as_of=LATER, default="opt-in")
    assert research.included == (w1,)  # the guild's allowed default stands in for the operator's opt-in
    before_terms = build_manifest(store, model_id="m3", uses=["ai_training"], as_of=T0, default="opt-out")
    assert before_terms.included == tuple(sorted((w1, w2)))  # terms count from their effective_from
    with store.write() as conn:
        add_grants(conn, [_grant(inside, "ai_training", "allowed"), _grant(inside, "research", "notAllowed")])
    own_yes = build_manifest(store, model_id="m4", uses=["ai_training"], as_of=LATER, default="opt-out")
    assert own_yes.included == (w2,) and "by guild terms" in own_yes.excluded[0][1]
    own_no = build_manifest(store, model_id="m5", uses=["research"], as_of=LATER, default="opt-in")
    assert own_no.included == () and f"person grant of {inside}" in dict(own_no.excluded)[w1]
    with store.write() as conn:
        distrust_issuer(conn, GUILD)
    untrusted = build_manifest(store, model_id="m6", uses=["ai_training"], as_of=LATER, default="opt-out")
    assert untrusted.included == tuple(sorted((w1, w2)))  # the member's own allowed grant decides again


def test_the_cli_loads_terms_only_for_a_trusted_issuer(tmp_path: Path, db_url: str | None) -> None:
    base = ["--data", str(tmp_path / "data")] + (["--db", db_url] if db_url else [])
    runner = CliRunner()
    assert runner.invoke(app, [*base, "init"]).exit_code == 0
    terms = tmp_path / "terms.toml"
    terms.write_text(TERMS)
    refused = runner.invoke(app, [*base, "guild", "terms", "load", str(terms), "--issuer", GUILD])
    assert (
        refused.exit_code == 1
        and refused.stderr.count("\n") == 1
        and "not on the operator's trust list" in (refused.stderr)
    )
    assert runner.invoke(app, [*base, "guild", "trust", GUILD, "--note", "the guild"]).exit_code == 0
    loaded = runner.invoke(app, [*base, "guild", "terms", "load", str(terms), "--issuer", GUILD, "--json"])
    assert loaded.exit_code == 0 and '"status": "stored"' in loaded.stdout and '"version": 1' in loaded.stdout
    terms.write_text(TERMS.replace("research", "likeness_smell"))
    bad = runner.invoke(app, [*base, "guild", "terms", "load", str(terms), "--issuer", GUILD])
    assert bad.exit_code == 1 and "unknown use 'likeness_smell'" in bad.stderr
    shown = runner.invoke(app, [*base, "guild", "terms", "show", "--issuer", GUILD, "--json"])
    assert shown.stdout.count('"version"') == 1
