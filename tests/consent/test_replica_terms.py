"""Digital-replica consent on both backends: a likeness grant covers one described use in one project, a
suspension (by a person, or by an issuer for the people it credentialed) keeps works out of manifests
built while it lasts, and a deceased person's consent comes from their estate, or their guild."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from endcredits.consent.guilds import load_guild_terms
from endcredits.consent.records import add_grants, add_suspension, grants_for, lift_suspension, revoke_grant
from endcredits.consent.rules import Grant, Suspension
from endcredits.errors import ConsentError, NotFoundError, ValidationError
from endcredits.manifest.build import build_manifest
from endcredits.manifest.records import record_training_run
from endcredits.manifest.reports import impact_report, suspend_and_report
from endcredits.registry.estates import record_death
from endcredits.registry.identity.trusted import trust_issuer
from endcredits.registry.records import CreditIn, WorkIn, add_credits, add_works
from endcredits.store.engine import Store, format_time
from endcredits.store.schema import consent_grants, consent_suspensions, credentials
from helpers_money import guild_member, people

UTC = dt.UTC
T0 = dt.datetime(2025, 1, 1, tzinfo=UTC)
STRIKE = dt.datetime(2026, 3, 1, tzinfo=UTC)


def likeness(person: int, project: str | None = "film-a", description: str | None = "a de-aged double") -> Grant:
    return Grant(
        subject_kind="person",
        subject_id=str(person),
        use="likeness_face",
        decision="allowed",
        valid_from=T0,
        valid_until=dt.datetime(2030, 1, 1, tzinfo=UTC),
        perpetual=False,
        source="contract-17.pdf",
        use_description=description,
        project=project,
    )


@pytest.fixture
def scan(store: Store) -> tuple[str, int, int]:
    """One face scan crediting an actor; a second person (later the estate)."""
    actor, heir = people(store, "actor", "heir")
    with store.write() as conn:
        (work,) = add_works(conn, [WorkIn(b"face scan", "face scan", "image/png", "https://studio.example/s/1")])
        add_credits(conn, [CreditIn(work, f"person:{actor}", "endcredits:scan_subject")])
    return work, actor, heir


def test_a_likeness_grant_needs_a_description_and_a_project() -> None:
    with pytest.raises(ValidationError, match="without a description of the use"):
        likeness(1, description=None)
    with pytest.raises(ValidationError, match="without a project"):
        likeness(1, project=None)
    refusal = Grant("person", "1", "likeness_voice", "notAllowed", T0, None, True, "letter")
    assert refusal.project is None  # refusing needs no description


def test_a_suspension_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValidationError, match="not after it starts"):
        Suspension("person", "1", (), STRIKE, STRIKE - dt.timedelta(days=1), "strike")


def test_likeness_consent_covers_its_own_project_only(store: Store, scan: tuple[str, int, int]) -> None:
    work, actor, _ = scan
    with store.write() as conn:
        add_grants(conn, [likeness(actor)])
        (_, stored), *_ = grants_for(conn, [], [str(actor)])
    assert (stored.project, stored.use_description) == ("film-a", "a de-aged double")
    uses = ["likeness_face"]
    mine = build_manifest(store, model_id="m-a", uses=uses, as_of=STRIKE, default="opt-in", project="film-a")
    other = build_manifest(store, model_id="m-b", uses=uses, as_of=STRIKE, default="opt-in", project="film-b")
    none = build_manifest(store, model_id="m-c", uses=uses, as_of=STRIKE, default="opt-in")
    assert mine.included == (work,) and mine.project == "film-a"
    assert other.included == () and "operator default opt-in" in other.excluded[0][1]
    assert none.included == ()


def test_a_person_suspends_and_the_report_lists_models_trained_before(store: Store, scan: tuple[str, int, int]) -> None:
    work, actor, _ = scan
    before = build_manifest(store, model_id="m", uses=["ai_training"], as_of=T0, default="opt-out")
    with store.write() as conn:
        record_training_run(
            conn, run_id="r1", manifest_id=before.id, checkpoint_sha256s=["a" * 64], started_at=T0, finished_at=T0
        )
        sid, report = suspend_and_report(conn, Suspension("person", str(actor), (), STRIKE, None, "strike 2026"))
    data = report.to_json()
    assert data["models"] == ["m"] and data["training_runs"] == ["r1"]
    assert data["manifests"][0]["built_before_suspension"] is True
    during = build_manifest(store, model_id="m", uses=["ai_training"], as_of=STRIKE, default="opt-out")
    assert during.included == () and "suspended by person" in during.excluded[0][1]
    with store.write() as conn:
        lift_suspension(conn, sid, STRIKE + dt.timedelta(days=30))
    after = build_manifest(
        store, model_id="m", uses=["ai_training"], as_of=STRIKE + dt.timedelta(days=31), default="opt-out"
    )
    assert after.included == (work,)


def test_an_issuer_suspends_for_the_people_it_credentialed(store: Store, scan: tuple[str, int, int]) -> None:
    work, actor, _ = scan
    with store.write() as conn:
        with pytest.raises(NotFoundError, match="no recorded credential was issued by did:web:guild.example"):
            add_suspension(conn, Suspension("issuer", "did:web:guild.example", (), STRIKE, None, "strike"))
        conn.execute(
            credentials.insert().values(
                person_id=actor,
                credential_id="urn:uuid:1",
                issuer="did:web:guild.example",
                subject="did:example:actor",
                valid_until=format_time(dt.datetime(2030, 1, 1, tzinfo=UTC)),
                credential_json="{}",
                added_at=format_time(T0),
            )
        )
        add_suspension(conn, Suspension("issuer", "did:web:guild.example", ("ai_training",), STRIKE, None, "strike"))
    during = build_manifest(store, model_id="m", uses=["ai_training"], as_of=STRIKE, default="opt-out")
    assert during.included == () and "suspended by issuer did:web:guild.example" in during.excluded[0][1]
    other_use = build_manifest(store, model_id="n", uses=["research"], as_of=STRIKE, default="opt-out")
    assert other_use.included == (work,)


def test_the_estate_consents_for_the_dead(store: Store, scan: tuple[str, int, int]) -> None:
    _, actor, heir = scan
    with store.write() as conn:
        (gid,) = add_grants(conn, [likeness(actor)])
        record_death(conn, actor, deceased_at=STRIKE, estate_person_id=heir)
    with store.read() as conn:
        grants_before = conn.execute(select(func.count()).select_from(consent_grants)).scalar_one()
    with pytest.raises(ConsentError, match=f"from their estate, person {heir}"), store.write() as conn:
        add_grants(conn, [likeness(actor, project="film-b")])
    with pytest.raises(ConsentError, match="recorded deceased"), store.write() as conn:
        revoke_grant(conn, gid, STRIKE)
    with pytest.raises(ConsentError, match="recorded deceased"), store.write() as conn:
        add_suspension(conn, Suspension("person", str(actor), (), STRIKE, None, "strike"))
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(consent_grants)).scalar_one() == grants_before
        assert conn.execute(select(func.count()).select_from(consent_suspensions)).scalar_one() == 0
    by_estate = Grant(**{**likeness(actor, project="film-b").__dict__, "granted_by": str(heir)})
    with store.write() as conn:
        add_grants(conn, [by_estate])
        revoked = revoke_grant(conn, gid, STRIKE, by=str(heir))
    assert revoked.revoked_at == STRIKE
    with pytest.raises(ConsentError, match="records no estate"), store.write() as conn:
        add_grants(conn, [Grant(**{**likeness(heir).__dict__, "granted_by": str(actor)})])


def test_impact_report_for_a_person_flags_perpetual_grants(store: Store, scan: tuple[str, int, int]) -> None:
    work, actor, _ = scan
    forever = Grant("person", str(actor), "ai_training", "allowed", T0, None, True, "releases/1997.pdf")
    with store.write() as conn:
        add_grants(conn, [forever])
    build_manifest(store, model_id="m", uses=["ai_training"], as_of=STRIKE, default="opt-in")
    with store.read() as conn:
        data = impact_report(conn, person_id=actor).to_json()
        with pytest.raises(ValidationError, match="exactly one"):
            impact_report(conn, person_id=actor, work_id=work)
    assert data["affected_works"] == [work]
    (flag,) = data["perpetual_grants"]
    assert flag["source"] == "releases/1997.pdf" and flag["flag"].startswith("perpetual")


def test_the_guild_still_speaks_for_a_deceased_member(store: Store, scan: tuple[str, int, int]) -> None:
    # Consent for the dead comes from the estate or the guild: once the actor is recorded deceased, the
    # guild's consent default (its terms) and the guild's suspension still reach the member's works.
    work, actor, heir = scan
    guild = "did:web:guild.example"
    with store.write() as conn:
        guild_member(conn, actor, guild)
        trust_issuer(conn, guild, note="the actors' guild")
        record_death(conn, actor, deceased_at=T0 + dt.timedelta(days=1), estate_person_id=heir)
        body = 'effective_from = "2025-01-01T00:00:00Z"\n[consent]\nresearch = "notAllowed"\n'
        load_guild_terms(conn, guild, body, "guild-terms.toml")
        add_suspension(conn, Suspension("issuer", guild, ("ai_training",), STRIKE, None, "strike"))
    research = build_manifest(store, model_id="r", uses=["research"], as_of=STRIKE, default="opt-in")
    assert research.included == () and f"guild terms of {guild} v1" in research.excluded[0][1]
    during = build_manifest(store, model_id="m", uses=["ai_training"], as_of=STRIKE, default="opt-out")
    assert during.included == () and f"suspended by issuer {guild}" in during.excluded[0][1]
    before = build_manifest(
        store, model_id="m", uses=["ai_training"], as_of=T0 + dt.timedelta(days=2), default="opt-out"
    )
    assert before.included == (work,)
