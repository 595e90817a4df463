"""Building a manifest on both backends: consent decides every work, a forbidden work is never included,
the Merkle root commits to the included works, and the same inputs give the same manifest."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from endcredits.consent.records import add_grants
from endcredits.consent.rules import Grant
from endcredits.errors import ValidationError
from endcredits.manifest.build import build_manifest
from endcredits.manifest.merkle import merkle_root
from endcredits.manifest.records import load_manifest, manifests_using
from endcredits.registry.records import CreditIn, WorkIn, add_credits, add_works, claim_name, name_ids
from endcredits.store.engine import Store
from helpers_money import people, row_counts

UTC = dt.UTC
T0 = dt.datetime(2025, 1, 1, tzinfo=UTC)
AS_OF = dt.datetime(2026, 1, 1, tzinfo=UTC)


def grant(kind: str, subject: str, decision: str, use: str = "commercial", source: str = "test/consent.json") -> Grant:
    return Grant(
        subject_kind=kind,
        subject_id=subject,
        use=use,
        decision=decision,  # type: ignore[arg-type]
        valid_from=T0,
        valid_until=None,
        perpetual=True,
        source=source,
    )


@pytest.fixture
def works(store: Store) -> dict[str, str]:
    """free: no grants; licensed: work grant allowed; refused: work grant notAllowed; objector: credits a person
    who refuses; via_name: credits a name claimed by that person; revoked: its notAllowed was revoked."""
    objector, fan = people(store, "objector", "fan")
    with store.write() as conn:
        nid = name_ids(conn, ["Objector Stage Name"])["Objector Stage Name"]
        claim_name(conn, nid, objector)
        keys = ["free", "licensed", "refused", "objector", "via_name", "revoked"]
        ids = dict(zip(keys, add_works(conn, [WorkIn(k.encode(), k, "text") for k in keys])))
        add_credits(
            conn,
            [
                CreditIn(ids["objector"], f"person:{objector}", "endcredits:performer"),
                CreditIn(ids["objector"], f"person:{fan}", "endcredits:composer"),
                CreditIn(ids["via_name"], f"name:{nid}", "endcredits:performer"),
                CreditIn(ids["free"], f"person:{fan}", "endcredits:composer"),
            ],
        )
        add_grants(
            conn,
            [
                grant("work", ids["licensed"], "allowed", source="license.txt"),
                grant("work", ids["refused"], "notAllowed", source="license.txt"),
                grant("person", str(objector), "notAllowed", source="guild/objector.json"),
                grant("person", str(fan), "allowed", source="guild/fan.json"),
            ],
        )
        add_grants(
            conn,
            [
                dataclasses.replace(
                    grant("work", ids["revoked"], "notAllowed"), revoked_at=dt.datetime(2025, 6, 1, tzinfo=UTC)
                )
            ],
        )
    return ids


def test_consent_decides_every_work_and_the_root_commits_to_the_included(store: Store, works: dict[str, str]) -> None:
    m = build_manifest(store, model_id="m", uses=["commercial"], as_of=AS_OF, default="opt-out")
    assert m.included == tuple(sorted(works[k] for k in ("free", "licensed", "revoked")))
    reasons = dict(m.excluded)
    assert set(reasons) == {works["refused"], works["objector"], works["via_name"]}
    assert reasons[works["refused"]] == "notAllowed for commercial by work grant (source: license.txt)"
    assert "notAllowed for commercial by person grant" in reasons[works["objector"]]
    assert "guild/objector.json" in reasons[works["via_name"]]  # a claimed name carries its person's refusal
    assert m.merkle_root == merkle_root(list(m.included))
    with store.read() as conn:
        assert load_manifest(conn, m.id) == m
        assert manifests_using(conn, works["free"]) == [(m.id, "m")]
        assert manifests_using(conn, works["refused"]) == []


def test_opt_in_includes_only_what_was_allowed(store: Store, works: dict[str, str]) -> None:
    m = build_manifest(store, model_id="m", uses=["commercial"], as_of=AS_OF, default="opt-in")
    # licensed: a work grant; free: its only credited person allowed.
    assert m.included == tuple(sorted((works["licensed"], works["free"])))
    assert dict(m.excluded)[works["revoked"]] == "no grant for commercial; operator default opt-in"


def test_the_same_inputs_build_the_same_manifest_once(store: Store, works: dict[str, str]) -> None:
    first = build_manifest(store, model_id="m", uses=["commercial"], as_of=AS_OF, default="opt-out")
    before = row_counts(store)
    second = build_manifest(store, model_id="m", uses=["commercial", "commercial"], as_of=AS_OF, default="opt-out")
    assert (second.id, second.merkle_root, second.included, second.excluded) == (
        first.id,
        first.merkle_root,
        first.included,
        first.excluded,
    )
    assert row_counts(store) == before
    # Before the grants took effect, under opt-in, nothing is allowed: another manifest.
    early = build_manifest(store, model_id="m", uses=["commercial"], as_of=T0 - dt.timedelta(days=1), default="opt-in")
    assert early.id != first.id and early.included == ()


def test_bad_requests_are_refused(store: Store) -> None:
    with pytest.raises(ValidationError, match="unknown use 'selling'"):
        build_manifest(store, model_id="m", uses=["selling"], as_of=AS_OF, default="opt-out")
    with pytest.raises(ValidationError, match="a manifest needs at least one use"):
        build_manifest(store, model_id="m", uses=[], as_of=AS_OF, default="opt-out")
    with pytest.raises(ValidationError, match="default regime must be opt-in or opt-out"):
        build_manifest(store, model_id="m", uses=["commercial"], as_of=AS_OF, default="maybe")  # type: ignore[arg-type]
    assert row_counts(store)["manifests"] == 0
